"""Content-addressed cache of reference log-probs, shared across runs (METHODS §5).

    cache = ReferenceCache(cache_dir, model_fingerprint(ref, source), tok.fingerprint())
    logps, n_tokens, n_computed = cached_logps(ref, tok, prompts, responses, cache, batch_size=8)

Key of one entry: sha256 of (cache format version, model fingerprint, tokenization
fingerprint, reduce, prompt text, response text). The model fingerprint covers the model
source (hub id or path), its config and a sample of every weight tensor with its dtype
(``model_fingerprint``); the tokenization fingerprint covers tokenizer, template and
truncation. Any change to any of them gives other keys, so a stale entry is never found.

Layout: ``<cache_dir>/m<model fp>-t<tok fp>/<2 hex>.jsonl``: 256 append-only shards per
(model, tokenization), one JSON line per entry ``{"k": key, "lp": logp, "n": n_tokens,
"c": checksum}``; ``meta.json`` records the full fingerprints for humans. On read every line is
validated (JSON, types, finite value, key prefix = shard, checksum over key+value): anything
invalid is counted in ``n_invalid``, ignored and recomputed, never trusted; a shard holding
invalid lines is rewritten cleanly on the next write to it. Appends of one batch are a single
``write``; concurrent writers can at worst tear a line, which the checks catch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bapo_exp.atomic import append_lines, write_text_atomic
from bapo_exp.modeling.scoring import score_texts
from bapo_exp.modeling.tokenize import Tokenization

log = logging.getLogger(__name__)
CACHE_VERSION = 1
_VOLATILE_CONFIG_KEYS = {
    "transformers_version",
    "dtype",
    "torch_dtype",
    "use_cache",
    "architectures",
}


def _canonical(name: str) -> str:
    """Parameter name without PEFT wrapping, so a LoRA-wrapped base matches the plain model."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _tensor_sample(t: Tensor, n: int = 1024) -> bytes:
    flat = t.detach().reshape(-1)
    if flat.numel() > n:
        step = torch.arange(n, dtype=torch.long, device=flat.device)
        flat = flat[step * (flat.numel() - 1) // (n - 1)]  # exact integer strides
    return flat.cpu().contiguous().view(torch.uint8).numpy().tobytes()


def model_fingerprint(model: Any, source: str, *, include_adapter: bool = True) -> str:
    """Identity of a model's weights: source id, config, and a strided sample of every tensor.

    Args:
        model: a ``PreTrainedModel`` or ``PeftModel`` (for a ``Reference`` use its
            ``fingerprint()``, which sets ``include_adapter`` correctly).
        source: the pretrained id or path it was loaded from (``cfg.pretrained``).
        include_adapter: hash LoRA parameters too. ``False`` describes the model with its
            adapter disabled, which then equals the plain base model's fingerprint.

    Returns:
        A 64-hex-digit sha256. Sampling 1024 values per tensor hashes a 7B model in seconds;
        LoRA deltas and fine-tuning change every element, hence the sample.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = {k: v for k, v in base.config.to_dict().items() if not k.startswith("_")}
    config = {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}
    h = hashlib.sha256(json.dumps([source, config], sort_keys=True, default=str).encode())
    params = sorted((_canonical(n), p) for n, p in model.named_parameters())
    for name, p in params:
        if not include_adapter and "lora_" in name:
            continue
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
        h.update(_tensor_sample(p))
    return h.hexdigest()


def _checksum(key: str, logp: float, n: int) -> str:
    return hashlib.sha256(f"{key}|{logp!r}|{n}".encode()).hexdigest()[:16]


class ReferenceCache:
    """Reference log-probs of (prompt, response) texts for one (model, tokenization, reduce).

    Args:
        cache_dir: shared root (``cfg.reference.cache_dir``), safe to share between runs.
        model_fingerprint: ``model_fingerprint(...)`` of the reference.
        tokenization_fingerprint: ``Tokenization.fingerprint()`` of the reference.
        reduce: ``sum`` or ``mean``; part of the key.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        model_fingerprint: str,
        tokenization_fingerprint: str,
        *,
        reduce: str = "sum",
    ) -> None:
        self.model_fingerprint = model_fingerprint
        self.tokenization_fingerprint = tokenization_fingerprint
        self.reduce = reduce
        self.dir = Path(cache_dir) / f"m{model_fingerprint[:16]}-t{tokenization_fingerprint[:16]}"
        self._shards: dict[str, dict[str, tuple[float, int]]] = {}
        self._dirty: set[str] = set()
        self.n_invalid = 0

    def key(self, prompt: str, response: str) -> str:
        payload = [
            CACHE_VERSION,
            self.model_fingerprint,
            self.tokenization_fingerprint,
            self.reduce,
            prompt,
            response,
        ]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()

    def _shard_path(self, prefix: str) -> Path:
        return self.dir / f"{prefix}.jsonl"

    def _parse(self, line: str, prefix: str) -> tuple[str, float, int] | None:
        try:
            rec = json.loads(line)
            key, logp, n = rec["k"], rec["lp"], rec["n"]
            ok = (
                isinstance(key, str)
                and key.startswith(prefix)
                and isinstance(logp, float)
                and math.isfinite(logp)
                and isinstance(n, int)
                and rec["c"] == _checksum(key, logp, n)
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        return (key, logp, n) if ok else None

    def _load_shard(self, prefix: str) -> dict[str, tuple[float, int]]:
        if prefix in self._shards:
            return self._shards[prefix]
        entries: dict[str, tuple[float, int]] = {}
        path = self._shard_path(prefix)
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if not line.strip():
                continue
            parsed = self._parse(line, prefix)
            if parsed is None:
                self.n_invalid += 1
                self._dirty.add(prefix)
                continue
            entries[parsed[0]] = (parsed[1], parsed[2])
        self._shards[prefix] = entries
        return entries

    def get_many(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> list[tuple[float, int] | None]:
        """``(logp, n_tokens)`` for each pair found valid in the cache, else ``None``."""
        out: list[tuple[float, int] | None] = []
        for p, r in zip(prompts, responses, strict=True):
            key = self.key(p, r)
            out.append(self._load_shard(key[:2]).get(key))
        return out

    def put_many(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        logps: Sequence[float] | Tensor,
        n_tokens: Sequence[int] | Tensor,
    ) -> None:
        """Store entries (non-finite values are not stored: they will be recomputed)."""
        lps = logps.tolist() if isinstance(logps, Tensor) else list(logps)
        nts = n_tokens.tolist() if isinstance(n_tokens, Tensor) else list(n_tokens)
        by_shard: dict[str, list[str]] = {}
        for p, r, lp, n in zip(prompts, responses, lps, nts, strict=True):
            lp, n = float(lp), int(n)
            if not math.isfinite(lp):
                continue
            key = self.key(p, r)
            rec = {"k": key, "lp": lp, "n": n, "c": _checksum(key, lp, n)}
            by_shard.setdefault(key[:2], []).append(json.dumps(rec))
            self._load_shard(key[:2])[key] = (lp, n)
        if not by_shard:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        for prefix, lines in by_shard.items():
            if prefix in self._dirty:
                self._rewrite(prefix)
            else:
                append_lines(self._shard_path(prefix), lines)  # never glued to a torn line

    def _rewrite(self, prefix: str) -> None:
        entries = self._shards[prefix]
        lines = [
            json.dumps({"k": k, "lp": lp, "n": n, "c": _checksum(k, lp, n)})
            for k, (lp, n) in entries.items()
        ]
        write_text_atomic(self._shard_path(prefix), "\n".join(lines) + "\n")
        self._dirty.discard(prefix)

    def _write_meta(self) -> None:
        meta = self.dir / "meta.json"
        if not meta.exists():
            info = {
                "version": CACHE_VERSION,
                "model_fingerprint": self.model_fingerprint,
                "tokenization_fingerprint": self.tokenization_fingerprint,
                "reduce": self.reduce,
            }
            meta.write_text(json.dumps(info, indent=2) + "\n")


def cached_logps(
    model: Any,
    tokenization: Tokenization,
    prompts: Sequence[str],
    responses: Sequence[str],
    cache: ReferenceCache,
    batch_size: int = 8,
    *,
    desc: str = "reference",
    on_forward: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, int]:
    """Reference log-probs from the cache, computing (and storing) only the misses.

    Returns:
        ``(logps, n_tokens, n_computed)``: (N,) float32, (N,) int64, and how many distinct
        pairs were scored by the model (0 when everything was cached).
    """
    pairs = list(zip(prompts, responses, strict=True))
    invalid = cache.n_invalid
    found = dict(zip(pairs, cache.get_many(prompts, responses), strict=True))
    if cache.n_invalid > invalid:
        log.warning("reference cache %s: %d invalid entries (corrupt or truncated lines) were "
                    "ignored; their pairs are scored again", cache.dir,
                    cache.n_invalid - invalid)  # fmt: skip
    misses = [pair for pair, value in found.items() if value is None]  # distinct pairs
    if misses:
        mp, mr = [m[0] for m in misses], [m[1] for m in misses]
        lp, nt = score_texts(
            model, tokenization, mp, mr, batch_size=batch_size, reduce=cache.reduce,
            desc=desc, on_forward=on_forward,
        )  # fmt: skip
        cache.put_many(mp, mr, lp, nt)
        found.update(zip(misses, zip(lp.tolist(), nt.tolist(), strict=True), strict=True))
    logps = torch.tensor([found[pair][0] for pair in pairs], dtype=torch.float32)
    n_tokens = torch.tensor([found[pair][1] for pair in pairs], dtype=torch.long)
    return logps, n_tokens, len(misses)
