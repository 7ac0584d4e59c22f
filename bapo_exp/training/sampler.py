"""Seeded, resumable data order: which examples form micro-batch ``m`` of step ``s``.

The order is a pure function of (seed, epoch), so resuming needs only the step number, and
every process of a multi-process run agrees on the global batch and takes its own slice.
"""

from __future__ import annotations

import torch


class StepSampler:
    """Global batches of ``global_batch`` example indices, epoch after epoch, reshuffled."""

    def __init__(self, n_examples: int, global_batch: int, seed: int) -> None:
        if n_examples < global_batch:
            raise ValueError(
                f"{n_examples} training pairs cannot fill one global batch of {global_batch} "
                "(train.batch_size x train.grad_accum x processes): lower them or add data"
            )
        self.n = n_examples
        self.global_batch = global_batch
        self.seed = seed
        self.steps_per_epoch = n_examples // global_batch  # the incomplete tail is dropped
        self._epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._epoch = epoch
        return self._perm

    def global_indices(self, step: int) -> list[int]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = self._permutation(epoch)
        return perm[pos * self.global_batch : (pos + 1) * self.global_batch]

    def micro_batches(self, step: int, *, rank: int, world: int, accum: int) -> list[list[int]]:
        """This process's ``accum`` micro-batches of step ``step``."""
        idx = self.global_indices(step)
        per_micro = self.global_batch // accum
        micros = [idx[m * per_micro : (m + 1) * per_micro] for m in range(accum)]
        return [mb[rank::world] for mb in micros]
