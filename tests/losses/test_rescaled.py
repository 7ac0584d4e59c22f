"""The MRPO control: DPO against (1 + eps_y) x the main reference (losses/rescaled.py)."""

from __future__ import annotations

import pytest
import torch

from bapo_exp.losses import dpo_loss, dpo_rescaled_loss, mrpo_loss
from bapo_exp.losses.types import PairLogps
from tests.losses import reference as ref


def _pair(gen, n=16) -> PairLogps:
    return PairLogps(*(ref.random_logps(n, gen).to(torch.float64) for _ in range(2)))


@pytest.mark.parametrize("split", ["adaptive", "fixed"])
@pytest.mark.parametrize(("eps", "smoothing"), [(0.1, 0.0), (0.5, 0.2)])
def test_matches_the_float64_reference(split: str, eps: float, smoothing: float) -> None:
    gen = torch.Generator().manual_seed(3)
    policy, main = _pair(gen), _pair(gen)
    out = dpo_rescaled_loss(policy, main, beta=0.3, label_smoothing=smoothing, ctro_eps=eps,
                            eps_split=split)  # fmt: skip
    naive = [ref.dpo_rescaled(*(float(t[i]) for t in (policy.chosen, policy.rejected,
                                                       main.chosen, main.rejected)),
                              beta=0.3, eps_ls=smoothing, eps=eps, split=split)
             for i in range(16)]  # fmt: skip
    torch.testing.assert_close(out.losses, torch.tensor(naive, dtype=torch.float64))


def test_eps_zero_is_exactly_dpo() -> None:
    gen = torch.Generator().manual_seed(4)
    policy, main = _pair(gen), _pair(gen)
    assert torch.equal(dpo_rescaled_loss(policy, main, ctro_eps=0.0).losses,
                       dpo_loss(policy, main).losses)  # fmt: skip


def test_is_mrpo_when_the_extra_reference_sits_on_the_lower_band_edge() -> None:
    """K=2, the extra reference far below the band and all weight on it (fixed weights [0, 1],
    harmonic): CTRO clips it to (1 + eps_y) l_0, and MRPO becomes this control. (Adaptive eps
    from two references differs from one: the identity uses the fixed split.)"""
    gen = torch.Generator().manual_seed(5)
    policy, main = _pair(gen), _pair(gen)
    far = PairLogps(main.chosen * 5, main.rejected * 5)  # log-probs are negative: far below
    mrpo = mrpo_loss(policy, [main, far], ctro_eps=0.2, eps_split="fixed", weights=[0.0, 1.0],
                     weight_assignment="harmonic")  # fmt: skip
    control = dpo_rescaled_loss(policy, main, ctro_eps=0.2, eps_split="fixed")
    torch.testing.assert_close(mrpo.losses, control.losses)
