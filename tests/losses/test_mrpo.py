"""MRPO: CTRO clipping, ARWC weights, the virtual reference and its identities (METHODS §4)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.losses import PairLogps, dpo_loss, mrpo_loss

from . import reference as ref

B = 32


def _inputs(seed: int, k: int) -> tuple[PairLogps, list[PairLogps]]:
    gen = torch.Generator().manual_seed(seed)
    policy = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    main = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    others = [
        PairLogps(ref.nearby(main.chosen, gen), ref.nearby(main.rejected, gen))
        for _ in range(k - 1)
    ]
    return policy, [main, *others]


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Main reference: l_0(y_w) = -10, l_0(y_l) = -10; extra: l_1(y_w) = -12, l_1(y_l) = -10.
# Policy: (-10, -10). beta = 1.
HAND_REFS = [PairLogps(_t(-10.0), _t(-10.0)), PairLogps(_t(-12.0), _t(-10.0))]
HAND_POLICY = PairLogps(_t(-10.0), _t(-10.0))


def test_hand_derived_fixed_weights_fixed_eps():
    """eps = 0.1 fixed: y_w band [1.1 * -10, 0.9 * -10] = [-11, -9], so l^_1(y_w) = -11
    (clipped); y_l: -10 lies inside [-11, -9] (not clipped). clip_frac_1 = 1/2.
    Weights [1, 1] -> alpha = (0.5, 0.5):
      log pi~(y_w) = -log(0.5 e^10 + 0.5 e^11) = -10 - log((1 + e)/2)
      log pi~(y_l) = -log(0.5 e^10 + 0.5 e^10) = -10
    z = (-10 - log pi~(y_w)) - (-10 - log pi~(y_l)) = log((1 + e)/2)
    L = log(1 + e^-z) = log(1 + 2/(1 + e)) = log((3 + e)/(1 + e)) = 0.43040...
    Against the main reference both rewards are 0.
    """
    out = mrpo_loss(
        HAND_POLICY, HAND_REFS, beta=1.0, ctro_eps=0.1, eps_split="fixed", weights=[1.0, 1.0]
    )
    assert out.losses.item() == pytest.approx(math.log((3 + math.e) / (1 + math.e)))
    m = out.metrics
    assert m["mrpo/clip_frac_1"].item() == 0.5
    assert m["mrpo/alpha_0"].item() == m["mrpo/alpha_1"].item() == 0.5
    assert m["mrpo/virtual_margin"].item() == pytest.approx(-math.log((1 + math.e) / 2))
    assert m["mrpo/rewards_accuracy"].item() == 1.0
    assert m["rewards/margin"].item() == 0.0 and m["rewards/accuracy"].item() == 0.0


def test_hand_derived_arwc_adaptive_eps():
    """ARWC: gaps |l_k(y_w) - l_k(y_l)| = (0, 2) -> alpha = (0, 2/(2 + 1e-6)).
    Adaptive eps: b_w = (-10 - 12)/2 = -11, b_l = -10, s = 11/21, eps_w = 0.1 * 11/21,
    so l^_1(y_w) = (1 + eps_w) * -10 = -10 - 11/21 (clipped); eps_l = 0.1 * 10/21 and -10 is
    inside its band. Only reference 1 has weight: log pi~(y) = l^_1(y) - log alpha_1, so
    z = l^_1(y_l) - l^_1(y_w) = 11/21 and L = log(1 + e^(-11/21)).
    official_k2 swaps the weights -> only the main reference counts -> z = 0, L = ln 2.
    """
    out = mrpo_loss(HAND_POLICY, HAND_REFS, beta=1.0, ctro_eps=0.1, weight_assignment="harmonic")
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-11 / 21)))
    assert out.metrics["mrpo/alpha_0"].item() == 0.0
    assert out.metrics["mrpo/alpha_1"].item() == pytest.approx(2 / (2 + 1e-6))
    assert out.metrics["mrpo/virtual_margin"].item() == pytest.approx(-11 / 21)
    swapped = mrpo_loss(HAND_POLICY, HAND_REFS, beta=1.0, weight_assignment="official_k2")
    assert swapped.losses.item() == pytest.approx(math.log(2))


CASES = [
    (k, split, weights, assignment, smoothing, eps)
    for k, split, weights, assignment, smoothing, eps in itertools.product(
        [2, 3],
        ["adaptive", "fixed"],
        ["arwc", "fixed"],
        ["harmonic", "official_k2"],
        [0.0, 0.1],
        [0.1, 0.3],
    )
    if not (assignment == "official_k2" and k != 2)
]


@pytest.mark.parametrize(("k", "split", "weights", "assignment", "smoothing", "eps"), CASES)
def test_matches_reference(k, split, weights, assignment, smoothing, eps):
    policy, refs = _inputs(seed=CASES.index((k, split, weights, assignment, smoothing, eps)), k=k)
    fixed = [0.5, 1.5, 2.0][:k] if weights == "fixed" else None
    kw = {"ctro_eps": eps, "eps_split": split, "weights": fixed, "weight_assignment": assignment}
    out = mrpo_loss(policy, refs, beta=0.1, label_smoothing=smoothing, **kw)
    rows = zip(
        policy.chosen.tolist(),
        policy.rejected.tolist(),
        zip(*(r.chosen.tolist() for r in refs), strict=True),
        zip(*(r.rejected.tolist() for r in refs), strict=True),
        strict=True,
    )
    losses, alphas, clips, margins = [], [], [], []
    for pw, pl, lw, ll in rows:
        args = {"eps": eps, "split": split, "weights": fixed, "assignment": assignment}
        losses.append(ref.mrpo(pw, pl, lw, ll, beta=0.1, eps_ls=smoothing, **args))
        vw, vl, alpha, flags = ref.mrpo_parts(lw, ll, **args)
        alphas.append(alpha)
        clips.append([(a + b) / 2 for a, b in flags])
        margins.append(vw - vl)
    assert_close(out.losses, _t(*losses))
    assert_close(out.metrics["mrpo/virtual_margin"], _t(*margins))
    for j in range(k):
        assert_close(out.metrics[f"mrpo/alpha_{j}"], _t(*(a[j] for a in alphas)))
        if j:
            assert_close(out.metrics[f"mrpo/clip_frac_{j}"], _t(*(c[j] for c in clips)))
    assert "mrpo/clip_frac_0" not in out.metrics


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("split", ["adaptive", "fixed"])
@pytest.mark.parametrize("weights", [None, "fixed"])
def test_eps_zero_is_dpo_against_main_reference(k, split, weights):
    policy, refs = _inputs(seed=5, k=k)
    fixed = [1.0, 3.0, 0.5][:k] if weights else None
    out = mrpo_loss(
        policy, refs, ctro_eps=0.0, eps_split=split, weights=fixed, weight_assignment="harmonic"
    )
    assert_close(out.losses, dpo_loss(policy, refs[0]).losses)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"ctro_eps": 0.5, "eps_split": "fixed"},
        {"weights": [0.2, 0.8]},
        {"weights": [3.0, 0.0], "weight_assignment": "official_k2"},
        {"weights": [1.0, 2.0, 3.0], "label_smoothing": 0.2, "weight_assignment": "harmonic"},
        {"ctro_eps": 0.9},
    ],
)
def test_identical_references_are_dpo(kw):
    policy, refs = _inputs(seed=6, k=len(kw.get("weights", [0, 0])))
    copies = [refs[0]] * len(refs)
    smoothing = kw.get("label_smoothing", 0.0)
    expected = dpo_loss(policy, refs[0], label_smoothing=smoothing).losses
    assert_close(mrpo_loss(policy, copies, **kw).losses, expected)


@pytest.mark.parametrize("a, b", [(0.3, 0.7), (2.0, 1.0), (1.0, 0.0)])
def test_official_k2_swaps_the_two_weights(a, b):
    policy, refs = _inputs(seed=8, k=2)
    official = mrpo_loss(policy, refs, weights=[a, b], weight_assignment="official_k2")
    harmonic = mrpo_loss(policy, refs, weights=[b, a], weight_assignment="harmonic")
    assert torch.equal(official.losses, harmonic.losses)
    assert torch.equal(official.metrics["mrpo/alpha_0"], harmonic.metrics["mrpo/alpha_0"])
    arwc = mrpo_loss(policy, refs, weight_assignment="harmonic")
    arwc_official = mrpo_loss(policy, refs, weight_assignment="official_k2")
    assert torch.equal(arwc_official.metrics["mrpo/alpha_0"], arwc.metrics["mrpo/alpha_1"])


def test_zero_gaps_fall_back_to_uniform_weights():
    """All references give y_w and y_l the same log-prob: ARWC alphas are all 0/1e-6 = 0 and
    the virtual reference is undefined; the loss uses uniform weights and stays finite."""
    policy, refs = _inputs(seed=9, k=3)
    flat = [PairLogps(r.chosen, r.chosen) for r in refs]
    out = mrpo_loss(policy, flat, weight_assignment="harmonic")
    assert torch.isfinite(out.losses).all()
    assert_close(out.metrics["mrpo/alpha_2"], torch.full((B,), 1 / 3, dtype=torch.float64))
    assert_close(
        out.losses,
        mrpo_loss(policy, flat, weights=[1.0, 1.0, 1.0], weight_assignment="harmonic").losses,
    )


def test_inputs_are_not_modified():
    policy, refs = _inputs(seed=10, k=3)
    before = [(r.chosen.clone(), r.rejected.clone()) for r in refs]
    mrpo_loss(policy, refs, weight_assignment="harmonic")
    for r, (c, j) in zip(refs, before, strict=True):
        assert torch.equal(r.chosen, c) and torch.equal(r.rejected, j)


@pytest.mark.parametrize(
    ("k", "kw", "match"),
    [
        (1, {}, "K >= 2"),
        (3, {"weight_assignment": "official_k2"}, "K=2"),
        (2, {"weight_assignment": "reverse"}, "harmonic"),
        (2, {"eps_split": "sometimes"}, "adaptive"),
        (2, {"ctro_eps": -0.1}, "ctro_eps"),
        (2, {"weights": [1.0, 1.0, 1.0]}, "weights"),
        (2, {"weights": [1.0, -1.0]}, "weights"),
        (2, {"weights": [0.0, 0.0]}, "weights"),
    ],
)
def test_invalid_options_are_clear_errors(k, kw, match):
    policy, refs = _inputs(seed=0, k=max(k, 2))
    with pytest.raises(ValueError, match=match):
        mrpo_loss(policy, refs[:k], **kw)
