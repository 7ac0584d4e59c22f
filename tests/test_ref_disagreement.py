"""The references' disagreement (references.disagreement, MRPO's second reference): zero for
identical references, hand-computed values on a tiny table."""

from __future__ import annotations

import pytest
import torch

from bapo_exp.reference_tables import RefTable, disagreement


def table(*refs) -> RefTable:
    """K references' (chosen, rejected) log-probs over the pairs, 4 tokens each."""
    logps = torch.tensor([[list(c), list(r)] for c, r in refs])
    return RefTable(logps, torch.full_like(logps, 4.0), roles=("chosen", "rejected"))


def test_disagreement_zero_for_identical_references():
    ref = ([-8.0, -12.0, -6.0], [-10.0, -9.0, -20.0])
    out = disagreement(table(ref, ref))
    assert out["mrpo/ref_disagreement"] == 0.0 and out["mrpo/ref_disagreement_stderr"] == 0.0
    assert out["mrpo/ref_rel_gap_1"] == 0.0
    assert out["mrpo/ref_margin_corr_1"] == pytest.approx(1.0)
    assert disagreement(table(ref)) == {}  # one reference: nothing to compare


def test_disagreement_against_hand_values():
    main = ([-8.0, -12.0, -6.0], [-10.0, -9.0, -20.0])
    other = ([-4.0, -12.0, -7.0], [-10.0, -13.0, -10.0])
    out = disagreement(table(main, other))
    # per pair: (|dl_w| + |dl_l|) / 2 / 4 tokens -> (4+0)/8, (0+4)/8, (1+10)/8
    assert out["mrpo/ref_disagreement_1"] == pytest.approx((0.5 + 0.5 + 11 / 8) / 3)
    assert out["mrpo/ref_rel_gap_1"] == pytest.approx(
        ((4 / 8 + 0) / 2 + (0 + 4 / 9) / 2 + (1 / 6 + 10 / 20) / 2) / 3
    )
    m0, m1 = torch.tensor([2.0, -3.0, 14.0]), torch.tensor([6.0, 1.0, 3.0])
    expected = torch.corrcoef(torch.stack([m0, m1]))[0, 1].item()
    assert out["mrpo/ref_margin_corr_1"] == pytest.approx(expected)
