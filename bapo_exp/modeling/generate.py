"""Batched, cached and resumable text generation (persona pairs, BAPO base responses).

Prompts arrive already rendered (``template.render_prompt``). Each finished batch is appended to
a JSONL cache, one line per prompt ``{"key", "prompt", "text"}``, where ``key`` hashes the
prompt with the model and tokenizer identity, the decoding settings and the caller's extra key
(writer name, template, ...). A re-run skips cached prompts; a run killed mid-write leaves a
broken last line, which is ignored and cut off before new lines are appended.

    from bapo_exp.modeling.generate import generate_texts
    texts = generate_texts(model, tok, prompts, max_new_tokens=256, cache_path=Path("gen.jsonl"))

Greedy decoding (the default) runs ``modeling.greedy``: prompts sorted by token length and
batched, a KV cache, finished rows leaving the batch; the same tokens as ``model.generate``
(``engine="hf"``, still used for sampling and for generation configs with logits processors).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from tqdm.auto import tqdm

from bapo_exp.modeling.greedy import eos_ids, greedy_batch, left_padded, plain_greedy_reason
from bapo_exp.modeling.scoring import eval_mode
from bapo_exp.modeling.tokenize import adds_bos

log = logging.getLogger(__name__)

CACHE_VERSION = 1
ENGINES = ("auto", "hf")


@dataclass
class GenerationCounter:
    """Batches and prompts generated here (both engines), for tests and benchmarks."""

    calls: int = 0
    prompts: int = 0

    def reset(self) -> None:
        self.calls = self.prompts = 0


GEN_COUNTER = GenerationCounter()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity(model: Any, tokenizer: Any) -> dict[str, Any]:
    """What identifies a (model, tokenizer) pair in cache keys (names, classes, chat template).

    Weights are not hashed: pass ``cache_key_extra`` for anything that changes them in place
    (a trained adapter, a checkpoint step).
    """
    config = getattr(model, "config", None)
    # A PEFT wrapper is not another model: y_b written by the reference stage (plain model)
    # must be found by the train stage (the same model wrapped, fresh adapter = no change).
    unwrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {
        "model": getattr(config, "_name_or_path", "") or "",
        "model_class": type(unwrapped).__name__,
        "tokenizer": getattr(tokenizer, "name_or_path", "") or "",
        "tokenizer_class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "chat_template": _sha(str(getattr(tokenizer, "chat_template", None) or "")),
    }


def settings_digest(
    model: Any, tokenizer: Any, settings: dict[str, Any], extra: dict | None
) -> str:
    """Digest of everything but the prompt that determines a generation."""
    material = {
        "v": CACHE_VERSION,
        **settings,
        "id": identity(model, tokenizer),
        "extra": extra or {},
    }
    return _sha(json.dumps(material, sort_keys=True, default=str))


def cache_key(prompt: str, digest: str) -> str:
    """Key of one prompt under one ``settings_digest``."""
    return _sha(f"{digest}\0{prompt}")


def read_cache(path: Path) -> dict[str, str]:
    """Cached ``key -> text``. A broken last line (killed mid-write) is ignored and cut off;
    a broken line elsewhere is skipped with a warning (its prompt is generated again)."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    done: dict[str, str] = {}
    pos = good_end = 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        row = None
        if line.endswith(b"\n"):
            with contextlib.suppress(ValueError):
                row = json.loads(line)
        if (
            isinstance(row, dict)
            and isinstance(row.get("key"), str)
            and isinstance(row.get("text"), str)
        ):
            done[row["key"]] = row["text"]
            good_end = pos
        elif pos < len(data):
            log.warning("%s: skipping a corrupted line ending at byte %d", path, pos)
            good_end = pos
    if good_end < len(data):
        log.warning("%s: ignoring a corrupted last line (interrupted write); truncating it", path)
        with path.open("r+b") as fh:
            fh.truncate(good_end)
    return done


@contextlib.contextmanager
def _append_to(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        yield fh


def _write_rows(fh: IO[str], rows: list[dict[str, str]]) -> None:
    fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    fh.flush()
    os.fsync(fh.fileno())


def _pad_id(model: Any, tokenizer: Any) -> int:
    for value in (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        model.generation_config.eos_token_id,
    ):
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


def encode_prompts(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts (no special tokens added but BOS).

    BOS is prepended only when the tokenizer adds one by default and the rendered text does not
    already start with it (chat templates usually write it), as ``modeling.tokenize`` does.
    """
    bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None
    rows = []
    for p in prompts:
        ids = list(tokenizer(p, add_special_tokens=False)["input_ids"])
        if bos is not None and ids[:1] != [bos]:
            ids = [bos, *ids]
        if not ids:
            raise ValueError(f"cannot generate from an empty prompt: {p!r}")
        rows.append(ids)
    return rows


def encode_left_padded(
    tokenizer: Any, prompts: list[str], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_prompts``, padded on the left: input_ids (B, T) and attention_mask (B, T)."""
    ids, mask, _ = left_padded(encode_prompts(tokenizer, prompts), pad_id, "cpu")
    return ids, mask


def _generation_config(model: Any, pad_id: int, settings: dict[str, Any]) -> Any:
    gc = copy.deepcopy(model.generation_config)
    gc.max_new_tokens = settings["max_new_tokens"]
    gc.do_sample = settings["do_sample"]
    gc.num_beams = 1
    gc.num_return_sequences = 1
    gc.pad_token_id = pad_id
    if settings["do_sample"]:
        gc.temperature, gc.top_p = settings["temperature"], settings["top_p"]
    else:
        gc.temperature = gc.top_p = gc.top_k = None
    return gc


def _generate_batch(
    model: Any, tokenizer: Any, prompts: list[str], gc: Any, seed: int | None
) -> list[str]:
    """One ``model.generate`` call (``engine="hf"``: sampling, logits processors)."""
    ids, mask = encode_left_padded(tokenizer, prompts, gc.pad_token_id)
    device = next(model.parameters()).device
    with torch.random.fork_rng(), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gc
        )
    return tokenizer.batch_decode(out[:, ids.shape[1] :].cpu(), skip_special_tokens=True)


def _greedy_texts(model: Any, tokenizer: Any, rows: list[list[int]], gc: Any) -> list[str]:
    """One ``greedy_batch`` (the default greedy engine), decoded as ``_generate_batch`` does."""
    new = greedy_batch(model, rows, max_new_tokens=gc.max_new_tokens, eos_ids=eos_ids(gc),
                       pad_id=gc.pad_token_id)  # fmt: skip
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def _run_batch(model, tokenizer, inputs: list, gc: Any, greedy: bool, seed: int, first: str):
    """One batch by either engine; ``first`` (its first key) seeds a sampled batch."""
    GEN_COUNTER.calls += 1
    GEN_COUNTER.prompts += len(inputs)
    if greedy:
        return _greedy_texts(model, tokenizer, inputs, gc)
    batch_seed = int(_sha(f"{seed}:{first}")[:8], 16) if gc.do_sample else None
    return _generate_batch(model, tokenizer, inputs, gc, batch_seed)


def _use_greedy(model: Any, gc: Any, engine: str, desc: str) -> bool:
    """Whether ``modeling.greedy`` reproduces ``generate`` here (``engine="auto"``)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; choose one of {list(ENGINES)}")
    reason = plain_greedy_reason(model, gc) if engine == "auto" else "engine='hf'"
    if reason is not None and not gc.do_sample:
        log.info("%s: model.generate (%s)", desc, reason)
    return reason is None


def _batches(
    tokenizer: Any, todo: dict[str, str], batch_size: int, greedy: bool
) -> list[tuple[list[str], Any]]:
    """Batches of keys and their inputs: for the greedy engine, token ids sorted by token count
    (similar lengths, little padding); for ``generate``, prompts by character count."""
    if greedy:
        ids = dict(zip(todo, encode_prompts(tokenizer, list(todo.values())), strict=True))
        order = sorted(todo, key=lambda k: -len(ids[k]))
        inputs = ids
    else:
        order, inputs = sorted(todo, key=lambda k: -len(todo[k])), todo
    return [
        (order[i : i + batch_size], [inputs[k] for k in order[i : i + batch_size]])
        for i in range(0, len(order), batch_size)
    ]


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    cache_path: Path | None = None,
    cache_key_extra: dict | None = None,
    desc: str = "generate",
    engine: str = "auto",
) -> list[str]:
    """Continue each rendered prompt; returns the new text only (prompt and special tokens
    removed, whitespace kept), in the order of ``prompts``.

    Args:
        model, tokenizer: a causal LM and its tokenizer (left padding is done here).
        prompts: rendered prompt strings; repeats are generated once.
        max_new_tokens: generation budget per prompt.
        batch_size: prompts per batch (longest prompts first).
        do_sample, temperature, top_p: greedy by default; sampling settings enter the key.
        seed: sampling seed, per batch (a resumed run may sample the remaining prompts in other
            batches than an uninterrupted one would; greedy output does not depend on it).
        cache_path: JSONL cache; None = no cache.
        cache_key_extra: more key material (writer name, template, adapter checksum, ...).
        desc: progress bar label.
        engine: ``auto`` (greedy: ``modeling.greedy`` when it reproduces ``generate``, see
            ``plain_greedy_reason``; sampling: ``generate``) or ``hf`` (always ``generate``).
            Not part of the cache key: both give the same tokens.
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"batch_size and max_new_tokens must be >= 1: {batch_size}, {max_new_tokens}"
        )
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        settings.update(temperature=temperature, top_p=top_p, seed=seed)
    digest = settings_digest(model, tokenizer, settings, cache_key_extra)
    keys = [cache_key(p, digest) for p in prompts]
    done = read_cache(cache_path) if cache_path is not None else {}
    todo = {k: p for k, p in zip(keys, prompts, strict=True) if k not in done}
    gc = _generation_config(model, _pad_id(model, tokenizer), settings)
    greedy = _use_greedy(model, gc, engine, desc)
    n_unique = len(set(keys))
    log.info(
        "%s: %d prompts, %d cached, %d to generate", desc, n_unique, n_unique - len(todo), len(todo)
    )
    bar = tqdm(total=n_unique, initial=n_unique - len(todo), desc=desc, unit="prompt")
    with bar, eval_mode(model), _append_to(cache_path) as fh:
        for batch, inputs in _batches(tokenizer, todo, batch_size, greedy):
            texts = _run_batch(model, tokenizer, inputs, gc, greedy, seed, batch[0])
            done.update(zip(batch, texts, strict=True))
            if fh is not None:
                _write_rows(fh, [{"key": k, "prompt": todo[k], "text": done[k]} for k in batch])
            bar.update(len(batch))
    return [done[k] for k in keys]
