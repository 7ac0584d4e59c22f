"""bapo-exp's Slurm launcher for Hydra (``hydra/launcher=slurm``, conf/hydra/launcher/slurm.yaml).

A Hydra launcher must live in the ``hydra_plugins`` namespace package; this one extends the
submitit plugin's ``SlurmLauncher``. Its helpers are in ``bapo_exp.run.cluster``.
"""
