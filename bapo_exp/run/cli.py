"""The ``bapo-exp`` command (also ``python -m bapo_exp``).

    bapo-exp method=bapo data.preferences=[academy]      # one run (Hydra overrides)
    bapo-exp -m method=dpo,bapo seed=0,1                  # a grid
    bapo-exp eval <run_dir> [eval.* overrides]            # re-evaluate a finished run
    bapo-exp show <run_dir>                               # print a run's result table
    bapo-exp --help                                       # groups, options and keys

Before Hydra composes anything, the overrides are checked against ``conf/`` and the schema, so a
misspelt option or key fails at once with the closest valid name (Hydra alone lists every
option and never suggests one).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bapo_exp.config import CONF_DIR
from bapo_exp.readback import DamagedFileError
from bapo_exp.registry import did_you_mean
from bapo_exp.run.usage import group_options, schema_keys

FREE_KEYS = ("data.world", "data.personas", "data.instructions", "micro.world",
             "micro.style_exposure")  # dict-valued settings: any sub-key  # fmt: skip


class UsageError(ValueError):
    """A command-line mistake: printed as one line, no traceback."""


def _check_key(key: str, known: list[str]) -> None:
    parts = [p for p in key.split(".") if not p.isdigit()]  # method.references.0.source
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in known:
            if i == len(parts) or prefix.endswith(FREE_KEYS):  # exact, or inside a dict setting
                return
            break
    raise UsageError(f"unknown config key {key!r}{did_you_mean('.'.join(parts), known)}; "
                     "`bapo-exp --help` lists the groups and keys")  # fmt: skip


def check_overrides(args: list[str]) -> None:
    """Fail on an unknown group option or config key, naming the closest valid one."""
    known = schema_keys()
    for arg in args:
        if arg.startswith("-") or "=" not in arg or arg.startswith(("+", "~")):
            continue
        key, value = arg.split("=", 1)
        if key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        if (CONF_DIR / key).is_dir():
            options = group_options(key)
            for option in value.split(","):
                if option and option != "null" and option not in options:
                    hint = did_you_mean(option, options)
                    raise UsageError(f"{key}={option}: no such option{hint}; options: {options}")
        else:
            _check_key(key, known)


def _run_hydra(args: list[str]) -> None:
    from bapo_exp.run.main import main as hydra_main

    sys.argv = [sys.argv[0], *args]
    hydra_main()


def eval_command(args: list[str]) -> None:
    """``bapo-exp eval <run_dir> [overrides]``: the run's own config, its eval stage again."""
    if not args or args[0].startswith("-"):
        raise UsageError("usage: bapo-exp eval <run_dir> [eval.* overrides]")
    run_dir, rest = Path(args[0]), args[1:]
    if not (run_dir / ".hydra" / "config.yaml").exists():
        raise UsageError(f"{run_dir} is not a run directory (no .hydra/config.yaml)")
    check_overrides(rest)
    from bapo_exp.run.identity import quoted

    _run_hydra(["stages=[eval]", "force=true", f"hydra.run.dir={quoted(str(run_dir))}", *rest])


def show_command(args: list[str]) -> None:
    from bapo_exp.run.report import run_table

    if not args:
        raise UsageError("usage: bapo-exp show <run_dir>")
    sys.stdout.write(run_table(args[0]) + "\n")


def main() -> None:
    from bapo_exp.run.register import register_configs

    register_configs()  # with the plug-ins: they may add methods, datasets, suites, options
    args = sys.argv[1:]
    try:
        if args and args[0] == "eval":
            return eval_command(args[1:])
        if args and args[0] == "show":
            return show_command(args[1:])
        if any(a in ("--help", "-h") for a in args):
            from bapo_exp.run.usage import usage

            sys.stdout.write(usage(__doc__))
            return None
        check_overrides(args)
    except (UsageError, DamagedFileError) as err:  # e.g. `show` of a run with a damaged summary
        sys.stderr.write(f"bapo-exp: error: {err}\n")
        raise SystemExit(2) from None
    _run_hydra(args)


if __name__ == "__main__":
    main()
