"""Whether every eval request fits the evaluated model's window, checked before any work: by
the run's checks (``bapo_exp.run.launch``) for sources whose tokenizer is at hand, and at the
eval stage's start for the others.
"""

from __future__ import annotations

import logging

from bapo_exp.config import Config, ConfigError

log = logging.getLogger(__name__)
# Model sources whose tokenizer and window cost nothing to read when a run starts (tiny: built in
# a second; hf: a local folder or the hub cache). Others (micro: pretrained; gguf: converted) are
# checked when the eval stage starts, before the evaluated model loads.
WINDOW_AT_START = ("tiny", "hf")


def check_window(cfg: Config, *, at_start: bool) -> None:
    """Every eval request's continuation fits the evaluated model's window (lm-eval cannot score
    one that does not: it would fail mid-evaluation). ``at_start``: the run's checks (for
    ``WINDOW_AT_START`` sources), else the eval stage's start (for the others)."""
    if not cfg.eval.suites or "eval" not in cfg.stages:
        return
    if at_start != (cfg.model.source in WINDOW_AT_START):
        return
    try:
        tokenizer, window = _tokenizer_and_window(cfg)
    except Exception as err:  # not at hand (hub id, offline): the model load will say why
        log.debug("window check skipped: %s", err)
        return
    too_long = {}
    for suite in cfg.eval.suites:
        from bapo_exp.evaluation.requests import build_requests, continuation_tokens

        instances, _ = build_requests(
            cfg.paths.data_root, suite, limit=cfg.eval.limit, num_fewshot=cfg.eval.num_fewshot,
            subjects=cfg.eval.mmlu_subjects, mc_format=str(cfg.eval.mc_format),
            mmlu_categories=str(cfg.eval.mmlu_categories), data=cfg.data,
            cache_dir=cfg.paths.cache_dir,
        )  # fmt: skip
        over = [n for n in continuation_tokens(instances, tokenizer) if n > window]
        if over:
            too_long[suite] = f"{len(over)} of {len(instances)} requests, up to {max(over)} tokens"
    if too_long:
        raise ConfigError(_window_error(cfg, window, too_long))


def _window_error(cfg: Config, window: int, too_long: dict[str, str]) -> str:
    """What does not fit, and the remedies that work (leaving a suite out also on a re-launch:
    ``eval.*`` is run-independent; a longer window only for a new run: it changes the model)."""
    fits = [s for s in cfg.eval.suites if s not in too_long]
    where = "; ".join(f"{suite}: {text}" for suite, text in too_long.items())
    longer = " (model.tiny.max_position_embeddings=4096)" if cfg.model.source == "tiny" else ""
    return (f"eval.suites: continuations longer than {cfg.model.name}'s window of {window} "
            f"tokens, which lm-eval cannot score: {where}. Leave them out "
            f"(eval.suites=[{','.join(fits)}], also on a re-launch), or for a new run use a model "
            f"with a longer window{longer}")  # fmt: skip


def _tokenizer_and_window(cfg: Config):
    """The evaluated model's tokenizer and window (lm-eval's ``max_length``), without weights."""
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoConfig

    from bapo_exp.logs import quiet_libraries
    from bapo_exp.modeling.load import load_tokenizer

    quiet_libraries()  # building the tiny model here: no transformers bars
    from bapo_exp.modeling.sources import resolve_model_path

    path = resolve_model_path(cfg.model, cfg.paths.cache_dir)
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir, path=path)
    return tokenizer, resolve_max_length(AutoConfig.from_pretrained(path), tokenizer)
