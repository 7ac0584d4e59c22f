"""What a process registers before Hydra composes a config (idempotent, the entry layer's job):
the resolvers ``conf/`` uses, the plug-ins, and the schemas.

    register_configs()     # the command line, the Hydra app, tools that compose conf/
    register_resolvers()   # a reader of saved configs (bapo_exp.analysis)

The schemas themselves (``bapo_exp.config``) know none of this: the resolvers name run
directories and grid cells, which are this layer's.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from bapo_exp.config import store_schemas
from bapo_exp.plugins import load_plugins
from bapo_exp.run.identity import cell_dir
from bapo_exp.run.relaunch import fresh_run_subdir


def register_resolvers() -> None:
    """The OmegaConf resolvers ``conf/`` uses (idempotent): ``${cell_dir:}`` names a multirun
    cell's folder by the cell's identity (``bapo_exp.run.identity``); ``${fresh_run_subdir:}``
    keeps Hydra from rewriting an existing run's ``.hydra/`` (``bapo_exp.run.relaunch``);
    ``${add:a,b}`` and ``${min:a,b}`` (a batch no larger than a scarce training set)."""
    resolvers = {"cell_dir": cell_dir, "fresh_run_subdir": fresh_run_subdir,
                 "add": lambda a, b: a + b,  # ${add:${model.micro.seed},100}
                 "min": lambda a, b: min(a, b)}  # ${min:16,${data.n_train}}  # fmt: skip
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def register_configs() -> None:
    """Register the resolvers, load the plug-ins (they may add schemas and resolvers of their
    own), and store every schema in Hydra's ConfigStore."""
    register_resolvers()
    load_plugins()
    store_schemas()
