"""Running the experiments: everything between the command line and the stages.

- ``cli``: the ``bapo-exp`` command (also ``python -m bapo_exp``); ``usage``: its ``--help``;
- ``main``: the Hydra app (one configuration's stages into one run directory);
- ``register``: what a process registers before Hydra composes (schemas, resolvers, plug-ins);
- ``launch``: from the composed config to the first stage; ``validate``: the checks before any
  model is loaded; ``relaunch``: an existing run directory's own saved config;
- ``identity``: what a run is (its identity) and the folder of each grid cell;
- ``multirun``: the report of a grid; ``report``: a run's and a grid's result tables;
- ``lock``: one launch at a time per run directory;
- ``cluster``: the helpers of the Slurm launcher (``hydra_plugins/bapo_exp_launcher``).
"""
