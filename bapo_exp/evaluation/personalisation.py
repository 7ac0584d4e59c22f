"""Generated personalisation: what a user sees (METHODS §6).

The evaluated model answers ``eval.gen_prompts`` held-out prompts greedily; each answer is
compared with the base response y_b to the same prompt

- **exactly**, where the data defines the style: ``STYLE_CHECKS[data.name]`` (or the check
  named by ``eval.style_check``) is ``in_style(text, preference) -> bool``;
- by the **implicit persona judge** (``evaluation.judge``), where the preference has an
  instruction (``data.instructions``; ``persona_gen`` falls back to ``data.personas``). The judge
  proves itself on the gold held-out pairs of the same prompts (``gen/judge_acc``). Where an
  exact check exists, the judge runs only if ``eval.judge`` names a model (it cannot add
  evidence the exact check does not give).

Outputs: ``<run>/eval/generations.jsonl`` (one row per prompt and preference) and ``gen/*`` plus
``personal/generated_*`` summary keys. Every rate comes with its standard error (the sample
standard error ``std(ddof=1) / sqrt(n)``, as lm-eval's ``acc_stderr``; NaN for n < 2).

Verdicts (design; ``z = eval.significance_z``):
- ``gen/judge_ok``: ``judge_acc > 0.5 + z * se``;
- ``personal/generated_personalised``: with an exact style check, the paired gain
  ``mean(in_style(gen) - in_style(y_b)) > z * se``; else, with a judge that passed its check,
  ``win_rate > 0.5 + z * se`` (ties count 0.5); else null (no evidence either way).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bapo_exp.atomic import write_jsonl_atomic
from bapo_exp.evaluation.answers import form_metrics
from bapo_exp.evaluation.items import GenItem, put
from bapo_exp.registry import Registry

log = logging.getLogger(__name__)

StyleCheck = Callable[[str, str], bool]

# name (a dataset's name, or any name eval.style_check selects) -> in_style(text, preference);
# the synthetic world registers "synthetic" (bapo_exp.synthetic.plugin).
STYLE_CHECKS: Registry[StyleCheck] = Registry("style check", config_key="eval.style_check")


@dataclass(frozen=True)
class GenSettings:
    """What generated personalisation takes from the run's config (built by the eval stage).

    Attributes:
        n_prompts: held-out (preference, prompt) items answered (``eval.gen_prompts``).
        max_new_tokens: generation budget (``eval.gen_max_new_tokens``, else y_b's budget).
        batch_size: prompts per generate call.
        z: standard errors a rate must clear for a verdict (``eval.significance_z``).
        cache_dir: generations are cached under ``<cache_dir>/generations``.
        reuse_base: the evaluated model is the untrained base with y_b's decoding settings, so
            its greedy generations are y_b (design): taken from the cache, not generated again.
        style_check: the exact style check, if the data defines one.
        instructions: preference -> the judge's instruction text.
        answer_format: the data's ``evaluation.answers.AnswerFormat``, if it has one
            (well-formedness and fact correctness of the generations).
    """

    n_prompts: int
    max_new_tokens: int
    batch_size: int
    z: float
    cache_dir: str
    reuse_base: bool = False
    style_check: StyleCheck | None = None
    instructions: dict[str, str] = field(default_factory=dict)
    answer_format: Any = None


def per_pref(out: dict, name: str, values: Sequence[float], prefs: Sequence[str]) -> None:
    """``gen/<preference>/<name>`` (and its standard error) for each preference."""
    for pref in sorted(set(prefs)):
        put(out, f"gen/{pref}/{name}", [v for v, q in zip(values, prefs, strict=True) if q == pref])


def duel(a: Sequence[float], b: Sequence[float], same: Sequence[bool]) -> list[float]:
    """1 where ``a > b``, 0 where ``a < b``, 0.5 for a tie (equal score or ``same`` text)."""
    return [0.5 if s or x == y else float(x > y) for x, y, s in zip(a, b, same, strict=True)]


def clears(mean: float, se: float, threshold: float, z: float) -> bool | None:
    """``mean > threshold + z * se``; None when the standard error is undefined (n < 2)."""
    if not math.isfinite(se):
        return None
    return bool(mean > threshold + z * se)


def style_checker(dataset: str, override: str | None = None) -> StyleCheck | None:
    """The exact style check named ``override`` (``eval.style_check``), else the dataset's own
    (None if it has none)."""
    if override is not None:
        return STYLE_CHECKS.require(override)
    return STYLE_CHECKS.get(dataset)


def instructions_of(data_cfg) -> dict[str, str]:
    """Preference -> judge instruction: ``data.instructions``, then ``data.personas``
    (``data_cfg``: a ``DataConfig``)."""
    out = dict(getattr(data_cfg, "personas", None) or {})  # persona_gen's schema only
    out.update(data_cfg.instructions or {})
    return {k: v for k, v in out.items() if isinstance(v, str) and v.strip()}


def style_metrics(
    check: StyleCheck, items: Sequence[GenItem], gens: Sequence[str], bases: Sequence[str]
) -> tuple[dict, list[dict]]:
    """Share of generations and of base responses in the preference's style, and the gain."""
    rows = []
    for it, g, b in zip(items, gens, bases, strict=True):
        try:
            rows.append({"gen_in_style": bool(check(g, it.preference)),
                         "base_in_style": bool(check(b, it.preference))})  # fmt: skip
        except Exception as e:
            raise ValueError(f"style check failed on item {it.id}: {e}") from e
    out: dict = {}
    put(out, "gen/style_share", [r["gen_in_style"] for r in rows])
    put(out, "gen/base_style_share", [r["base_in_style"] for r in rows])
    put(out, "gen/style_gain", [r["gen_in_style"] - r["base_in_style"] for r in rows])
    return out, rows


def judge_metrics(
    judge, items: Sequence[GenItem], gens: Sequence[str], bases: Sequence[str],
    instructions: dict[str, str], z: float,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """Judge scores of generations and y_b, win rate, and the judge's accuracy on gold pairs."""
    missing = sorted({it.preference for it in items} - set(instructions))
    keep = [i for i, it in enumerate(items) if it.preference in instructions]
    rows: list[dict] = [{} for _ in items]
    if missing:
        log.warning("judge: no instruction for preference(s) %s (set data.instructions); their "
                    "items are not judged", missing)  # fmt: skip
    if not keep:
        return {"gen/judge_skipped": f"no instruction for preference(s) {missing}"}, rows
    pairs = [p for i in keep for p in items[i].pairs]
    prompts = [items[i].prompt for i in keep]
    instr = [instructions[items[i].preference] for i in keep]
    pair_prompts = [p.prompt for p in pairs]
    pair_instr = [instructions[p.preference] for p in pairs]
    s = judge.scores(
        [*prompts, *prompts, *pair_prompts, *pair_prompts],
        [*(gens[i] for i in keep), *(bases[i] for i in keep), *(p.chosen for p in pairs),
         *(p.rejected for p in pairs)],
        [*instr, *instr, *pair_instr, *pair_instr],
    ).tolist()  # fmt: skip
    k, m = len(keep), len(pairs)
    s_gen, s_base, s_w, s_l = s[:k], s[k : 2 * k], s[2 * k : 2 * k + m], s[2 * k + m :]
    for j, i in enumerate(keep):
        rows[i] = {"judge_gen": s_gen[j], "judge_base": s_base[j]}
    out: dict = {"gen/judge_n": k, "gen/judge_n_pairs": m}
    put(out, "gen/judge_score", s_gen)
    put(out, "gen/base_judge_score", s_base)
    wins = duel(s_gen, s_base, [gens[i] == bases[i] for i in keep])
    hits = duel(s_w, s_l, [p.chosen == p.rejected for p in pairs])
    put(out, "gen/win_rate", wins)
    put(out, "gen/judge_acc", hits)
    per_pref(out, "win_rate", wins, [items[i].preference for i in keep])
    per_pref(out, "judge_acc", hits, [p.preference for p in pairs])
    out["gen/judge_ok"] = bool(clears(out["gen/judge_acc"], out["gen/judge_acc_stderr"], 0.5, z))
    if not out["gen/judge_ok"]:
        log.warning("judge %s FAILED its own check: accuracy %.3f +- %.3f on %d gold held-out "
                    "pairs (needs > 0.5 + %.1f se); its win rates are not evidence", judge.name,
                    out["gen/judge_acc"], out["gen/judge_acc_stderr"], m, z)  # fmt: skip
    return out, rows


def verdict(metrics: dict, z: float) -> dict:
    """``personal/generated_personalised`` from exact style scoring, else from a passing judge."""
    if "gen/style_gain" in metrics:
        ok = clears(metrics["gen/style_gain"], metrics["gen/style_gain_stderr"], 0.0, z)
        evidence, rule = "style", f"mean(in_style(gen) - in_style(y_b)) > {z} se"
    elif metrics.get("gen/judge_ok"):
        ok = clears(metrics["gen/win_rate"], metrics["gen/win_rate_stderr"], 0.5, z)
        evidence, rule = "judge", f"judge win rate over y_b > 0.5 + {z} se (judge passed)"
    else:
        ok, evidence, rule = None, "none", "no exact style check and no judge that passed"
    return {"personal/generated_personalised": ok, "personal/generated_evidence": evidence,
            "personal/generated_rule": rule}  # fmt: skip


def item_rows(items: Sequence[GenItem], gens: Sequence[str], bases: Sequence[str]) -> list[dict]:
    """The generations file's rows: id, preference, prompt, generation, y_b and gold texts."""
    return [
        {"id": it.id, "preference": it.preference, "prompt": it.prompt, "generation": g,
         "base": b, "chosen": list(dict.fromkeys(p.chosen for p in it.pairs)),
         "rejected": list(dict.fromkeys(p.rejected for p in it.pairs)),
         "pair_ids": [p.id for p in it.pairs]}
        for it, g, b in zip(items, gens, bases, strict=True)
    ]  # fmt: skip


def text_metrics(gens: Sequence[str], bases: Sequence[str]) -> dict:
    """Lengths (the judge partly rewards short text) and the share identical to y_b."""
    out: dict = {"gen/n": len(gens)}
    put(out, "gen/identical_to_base", [g == b for g, b in zip(gens, bases, strict=True)])
    put(out, "gen/chars", [len(g) for g in gens])
    put(out, "gen/base_chars", [len(b) for b in bases])
    return out


def generate(
    model, tokenizer, spec, items: Sequence[GenItem], settings: GenSettings, base: dict
) -> list[str]:
    """Greedy answers of the evaluated model (adapter applied in memory), batched and cached.

    Args:
        spec: the evaluated model's ``ModelSpec`` (template, and its weights' source id).
    """
    from bapo_exp.modeling.generate import generate_texts
    from bapo_exp.modeling.logp_cache import model_fingerprint
    from bapo_exp.modeling.tokenize import Tokenization

    if settings.reuse_base:
        log.info("generations: the evaluated model is the base model, so its greedy "
                 "generations are the base responses y_b (%d prompts)", len(items))  # fmt: skip
        return [base[it.prompt] for it in items]
    tok = Tokenization.from_config(tokenizer, spec)
    fp = model_fingerprint(model, spec.pretrained, include_adapter=True)
    return generate_texts(
        model, tokenizer, [tok.render(it.prompt) for it in items],
        max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
        cache_path=Path(settings.cache_dir) / "generations" / f"{fp[:16]}.jsonl",
        cache_key_extra={"model": fp, "tokenization": tok.fingerprint()},
        desc=f"eval generations ({len(items)} prompts)",
    )  # fmt: skip


def run_generated(
    settings: GenSettings, out_path: Path, evaluated, items: Sequence[GenItem], base: dict, judge
) -> dict:
    """Generate, write ``out_path`` (generations.jsonl), score exactly and by the judge.

    Args:
        settings: see ``GenSettings``.
        out_path: ``<run>/eval/generations.jsonl``; rewritten with per-item scores at the end.
        evaluated: ``(model, tokenizer, spec)`` of the evaluated model.
        items: the held-out items (``select_items``).
        base: prompt -> y_b for every item's prompt.
        judge: called once there is something to judge: returns an ``ImplicitJudge``, or a
            string saying why there is none.
    """
    if not items:
        return {"gen/skipped": "no held-out prompts (eval.gen_prompts=0 or no held-out pairs)"}
    gens = generate(*evaluated, items, settings, base)
    bases = [base[it.prompt] for it in items]
    rows = item_rows(items, gens, bases)
    write_jsonl_atomic(out_path, rows)
    out = text_metrics(gens, bases)
    if settings.style_check is not None:
        more, extra = style_metrics(settings.style_check, items, gens, bases)
        out.update(more)
        rows = [{**r, **e} for r, e in zip(rows, extra, strict=True)]
    if settings.answer_format is not None:
        more, extra = form_metrics(settings.answer_format, items, gens, bases)
        out.update(more)
        rows = [{**r, **e} for r, e in zip(rows, extra, strict=True)]
    judge = judge()
    if isinstance(judge, str):
        log.info("implicit judge skipped: %s", judge)
        out["gen/judge_skipped"] = judge
    else:
        more, extra = judge_metrics(judge, items, gens, bases, settings.instructions, settings.z)
        out.update(more)
        rows = [{**r, **e} for r, e in zip(rows, extra, strict=True)]
    write_jsonl_atomic(out_path, rows)
    out.update(verdict(out, settings.z))
    return out
