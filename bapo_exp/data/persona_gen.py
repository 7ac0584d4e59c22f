"""Persona preference pairs written by a local model (P-Soups dimensions, our own wording).

For each prompt (default: the 50 Koala evaluation prompts of P-Soups), the writer model answers
the prompt followed by persona A's instruction (chosen) and by the contrasting persona B's
instruction (rejected); the contrast of ``P1A`` is ``P1B`` and vice versa. Persona texts come
from ``data.personas`` (``conf/data/persona_gen.yaml``). Generations are cached on disk under
``<cache_dir>/persona_gen/<writer>.jsonl`` and resumable (``modeling.generate``).

    python -m bapo_exp method=dpo data=persona_gen data.writer=smollm2_135m data.preferences=[P3A]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bapo_exp.config import DataConfig
from bapo_exp.data.heterogeneity import SplitPools, split_groups, split_note
from bapo_exp.data.io import read_prompts, resolve_path
from bapo_exp.data.types import PreferenceExample
from bapo_exp.data.validation import DataError, check_preferences
from bapo_exp.modeling.template import has_chat_template, render_prompt

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = "psoups/koala_eval_50.json"
PERSONA_TEMPLATE = "{prompt} {persona}"  # as in P-Soups, the instruction follows the request
WRITER_PROMPT_TEMPLATE = "{prompt}\n"  # when the writer's tokenizer has no chat template
GEN_SEED = 0  # sampling seed (used only with data.do_sample)


def contrast_of(pid: str) -> str:
    """The contrasting persona: same dimension, other letter (``P1A`` <-> ``P1B``)."""
    if len(pid) < 2 or pid[-1] not in "AB":
        raise DataError(
            f"data.preferences: persona id {pid!r} must end in A or B (its contrast is the other)"
        )
    return pid[:-1] + ("B" if pid[-1] == "A" else "A")


def persona_texts(cfg: DataConfig) -> dict[str, str]:
    """``data.personas`` validated: persona id -> non-empty instruction."""
    personas = cfg.personas
    if not personas:
        raise DataError(
            "data.personas is empty: persona_gen needs persona id -> instruction "
            "(see conf/data/persona_gen.yaml)"
        )
    for pid, text in personas.items():
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"data.personas.{pid}: expected a non-empty string")
    return dict(personas)


def write_responses(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    instructions: dict[str, str],
    *,
    cfg: DataConfig,
    cache_path: Path,
) -> dict[tuple[str, int], str]:
    """Generate every (persona, prompt) answer; returns ``(persona id, prompt index) -> text``."""
    users = [
        (pid, j, PERSONA_TEMPLATE.format(prompt=p, persona=instructions[pid]))
        for pid in sorted(instructions)
        for j, p in enumerate(prompts)
    ]
    rendered = [
        render_prompt(tokenizer, u, use_chat_template=True, prompt_template=WRITER_PROMPT_TEMPLATE)
        for _, _, u in users
    ]
    from bapo_exp.modeling.generate import generate_texts  # torch: only when generating

    texts = generate_texts(
        model,
        tokenizer,
        rendered,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
        do_sample=cfg.do_sample,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=GEN_SEED,
        cache_path=cache_path,
        cache_key_extra={"writer": cfg.writer, "purpose": "persona_gen"},
        desc=f"persona_gen[{cfg.writer}]",
    )
    return {(pid, j): t for (pid, j, _), t in zip(users, texts, strict=True)}


def make_pairs(
    cfg: DataConfig,
    contrasts: dict[str, str],
    prompts: list[tuple[str, str]],
    texts: dict[tuple[str, int], str],
    held: set,
    *,
    path: Path,
) -> SplitPools:
    """Chosen = persona A's answer, rejected = its contrast's; prompts in ``held`` held out."""
    pools = SplitPools(train={p: [] for p in contrasts}, heldout={p: [] for p in contrasts})
    personas = cfg.personas
    for pid, rej in contrasts.items():
        for j, (rid, prompt) in enumerate(prompts):
            shown = prompt
            if not cfg.strip_persona_prompt:
                shown = PERSONA_TEMPLATE.format(prompt=prompt, persona=personas[pid])
            side = pools.heldout if prompt in held else pools.train
            side[pid].append(
                PreferenceExample(
                    id=f"persona_gen/{pid}/q{rid}/{rej}",
                    prompt=shown,
                    chosen=texts[(pid, j)],
                    rejected=texts[(rej, j)],
                    preference=pid,
                    source={
                        "dataset": "persona_gen",
                        "writer": str(cfg.writer),
                        "file": str(path),
                        "prompt_id": rid,
                        "rejected_persona": rej,
                    },
                )
            )
    return pools


def _checked(cfg: DataConfig, data_root: str):
    """``(personas, contrasts, prompts file, prompts)``: what ``build`` checks before it loads
    the writer model (preferences, their contrasting personas, the prompts file)."""
    personas = persona_texts(cfg)
    prefs = check_preferences(cfg.preferences, personas, kind="persona", defined_in="data.personas")
    contrasts = {p: contrast_of(p) for p in prefs}
    if lost := sorted(set(contrasts.values()) - set(personas)):
        raise DataError(f"data.personas: no text for the contrasting persona(s) {lost}")
    path = resolve_path(cfg.path, data_root, DEFAULT_PROMPTS)
    return personas, contrasts, path, read_prompts(path)


def preflight(cfg: DataConfig, *, data_root: str, cache_dir: str) -> None:
    """Everything ``build`` checks before it loads the writer model."""
    del cache_dir
    if not cfg.writer:
        raise DataError("data.writer: persona_gen needs a writer model (a conf/model/ name)")
    _checked(cfg, data_root)


def build(
    cfg: DataConfig,
    *,
    data_root: str,
    cache_dir: str,
    load_writer: Callable[[str], tuple[Any, Any]] | None = None,
) -> SplitPools:
    """Write persona pairs for ``cfg.preferences`` (empty = every persona) and split by prompt."""
    if load_writer is None or not cfg.writer:
        raise ValueError(
            "persona_gen needs data.writer (a model config name) and a load_writer callback"
        )
    personas, contrasts, path, prompts = _checked(cfg, data_root)
    model, tokenizer = load_writer(cfg.writer)
    needed = {p: personas[p] for p in set(contrasts) | set(contrasts.values())}
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(cfg.writer))
    cache_path = Path(cache_dir) / "persona_gen" / f"{safe}.jsonl"
    texts = write_responses(
        model, tokenizer, [p for _, p in prompts], needed, cfg=cfg, cache_path=cache_path
    )
    held = split_groups([p for _, p in prompts], heldout_frac=cfg.heldout_frac, seed=cfg.split_seed)
    pools = make_pairs(cfg, contrasts, prompts, texts, held, path=path)
    pools.report = {
        "dataset": "persona_gen",
        "files": [str(path)],
        "writer": cfg.writer,
        "writer_template": "chat" if has_chat_template(tokenizer) else WRITER_PROMPT_TEMPLATE,
        "persona_template": PERSONA_TEMPLATE,
        "generation_cache": str(cache_path),
        "preferences": list(contrasts),
        "contrasts": contrasts,
        "split": split_note(
            [p for _, p in prompts], held, heldout_frac=cfg.heldout_frac, seed=cfg.split_seed
        ),
    }
    return pools
