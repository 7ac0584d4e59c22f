"""Running grids on Slurm: the helpers of the project's Slurm launcher.

The launcher itself is a Hydra plugin (``hydra_plugins/bapo_exp_launcher``, selected by
``hydra/launcher=slurm``); what it does is here, importable and testable without Hydra's
plugin machinery:

- ``job_states``: job states from ``squeue`` when the cluster has no accounting (no ``sacct``);
- ``cells``: finished cells are not submitted again, and a job that ends without a result
  (``scancel``, node failure, out of requeues) is named in the multirun report;
- ``processes``: a cell that runs several processes (``accelerate launch``) as its one job.
"""
