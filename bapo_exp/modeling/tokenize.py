"""Per-model tokenisation of (prompt, response) text pairs (METHODS §1).

    tok = Tokenization.from_config(tokenizer, cfg.model)
    seqs = tok.encode_many(prompts, responses)          # list[TokenizedSeq]
    batch = collate(seqs, tok.pad_id, side="left")      # input_ids, attention_mask, loss_mask, ...

Rules (each one is tested):
- The prompt is rendered with the model's template (``render_prompt``: chat template with
  ``add_generation_prompt=True`` when the tokenizer has one, else ``prompt_template``).
- Prompt and response are tokenized **separately** and concatenated as ids, so the
  prompt/response boundary is exact by construction (PITFALLS: BPE merges across the boundary).
- Prompt ids: a rendered chat template already holds its special tokens, so it is encoded with
  ``add_special_tokens=False``; a plain template gets the tokenizer's BOS if (and only if) the
  tokenizer adds one by default. BOS is never duplicated and never ``None`` (Qwen has none).
- Response ids: ``add_special_tokens=False``; trailing EOS ids already in the text are dropped
  and exactly one EOS is appended.
- Truncation: the prompt keeps its **last** ``max_prompt_tokens`` ids (left truncation); the
  response with its EOS keeps its **first** ``max_response_tokens`` ids (right truncation), so a
  truncated response has no EOS and is scored as a prefix. Both are flagged per sequence and
  counted (``truncation_counts``).
- Each model gets its own ``Tokenization``; ids are shared between two models only when their
  tokenizers are identical (``same_tokenizer``), otherwise ``TokenizerMismatchError``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bapo_exp.modeling.template import has_chat_template, render_prompt

TOKENIZATION_VERSION = 1  # bump when a rule above changes: invalidates reference caches
_PROBE_PROMPT = "Probe: does the template change? \u00e9\u4e2d"


class TokenizerMismatchError(ValueError):
    """Token ids of one tokenizer were about to be fed to a model with another vocabulary."""


@dataclass(frozen=True)
class TokenizedSeq:
    """One tokenized pair: ``ids = prompt_ids + response_ids`` (response includes its EOS).

    Attributes:
        ids: token ids, length ``n_prompt + n_response``.
        n_prompt: number of prompt ids; ``ids[n_prompt:]`` are the scored response ids.
        prompt_truncated: the prompt lost ids on the left.
        response_truncated: the response lost ids on the right (its EOS included).
    """

    ids: list[int]
    n_prompt: int
    prompt_truncated: bool = False
    response_truncated: bool = False

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def _backend_json(tokenizer: Any) -> dict | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.loads(backend.to_str())


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def vocab_digest(tokenizer: Any) -> str:
    """Hash of the tokenizer's vocabulary, merges and added tokens (what ids mean)."""
    data = _backend_json(tokenizer)
    if data is None:  # slow tokenizer: the vocabulary is all we can compare
        return _digest({"vocab": tokenizer.get_vocab()})
    return _digest({"model": data.get("model"), "added": data.get("added_tokens")})


def tokenizer_digest(tokenizer: Any) -> str:
    """Hash of everything that maps text to ids (vocab, merges, normalizer, pre-tokenizer,
    post-processor, special tokens). The backend's padding/truncation state is excluded: it is
    mutated by calls such as ``tokenizer(..., padding=True)`` and does not change our ids."""
    specials = (tokenizer.bos_token_id, tokenizer.eos_token_id, type(tokenizer).__name__)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return _specials_digest(None, specials, vocab_digest(tokenizer))
    return _specials_digest(backend.to_str(), specials, None)


@functools.lru_cache(maxsize=32)
def _specials_digest(backend: str | None, specials: tuple, vocab: str | None) -> str:
    """``tokenizer_digest`` of a serialised backend (parsed once per distinct text: evaluating
    a model at every training step does not parse its tokenizer again)."""
    data = json.loads(backend) if backend is not None else None
    if data is not None:
        data.pop("padding", None)
        data.pop("truncation", None)
    bos, eos, cls = specials
    return _digest({"backend": data or vocab, "specials": {"bos": bos, "eos": eos, "class": cls}})


def same_tokenizer(tok_a: Any, tok_b: Any) -> bool:
    """True when both tokenizers have identical vocabularies, merges and added tokens."""
    return tok_a is tok_b or vocab_digest(tok_a) == vocab_digest(tok_b)


def require_same_tokenizer(tok_a: Any, tok_b: Any, *, force: bool = False) -> None:
    """Refuse to share token ids between different vocabularies (METHODS §4.1).

    Raises:
        TokenizerMismatchError: vocabularies or merges differ and ``force`` is false.
    """
    if force or same_tokenizer(tok_a, tok_b):
        return
    raise TokenizerMismatchError(
        f"tokenizers differ ({getattr(tok_a, 'name_or_path', '?')!r}, vocab {len(tok_a)} vs "
        f"{getattr(tok_b, 'name_or_path', '?')!r}, vocab {len(tok_b)}): ids of one would be "
        "scored as gibberish by the other. Re-tokenise the text with each model's own "
        "Tokenization (the default), or force id sharing explicitly to reproduce the official code."
    )


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer prepends BOS by default (then our encodings do too)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    return tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


class Tokenization:
    """Tokenisation bound to one tokenizer, template and truncation budget.

    Args:
        tokenizer: a Hugging Face tokenizer (must define an EOS token).
        use_chat_template: render with the tokenizer's chat template when it has one.
        prompt_template: ``str.format`` template with ``{prompt}`` for tokenizers without one.
        max_prompt_tokens: prompt budget (left truncation).
        max_response_tokens: response budget including the EOS (right truncation).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        use_chat_template: bool = True,
        prompt_template: str = "{prompt}\n",
        max_prompt_tokens: int = 256,
        max_response_tokens: int = 256,
    ) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token")
        if max_prompt_tokens < 1 or max_response_tokens < 1:
            raise ValueError("max_prompt_tokens and max_response_tokens must be >= 1")
        self.tokenizer = tokenizer
        self.use_chat_template = use_chat_template
        self.prompt_template = prompt_template
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.chat = bool(use_chat_template and has_chat_template(tokenizer))
        self.eos_id: int = tokenizer.eos_token_id
        self.bos_id: int | None = tokenizer.bos_token_id if adds_bos(tokenizer) else None
        self._prompt_cache: dict[str, list[int]] = {}
        self._fingerprint: str | None = None

    @classmethod
    def from_config(cls, tokenizer: Any, cfg: Any, **overrides: Any) -> Tokenization:
        """Build from a ``ModelSpec`` (template and truncation lengths)."""
        kwargs = {
            "use_chat_template": cfg.use_chat_template,
            "prompt_template": cfg.prompt_template,
            "max_prompt_tokens": cfg.max_prompt_tokens,
            "max_response_tokens": cfg.max_response_tokens,
        }
        kwargs.update(overrides)
        return cls(tokenizer, **kwargs)

    @property
    def pad_id(self) -> int:
        """Padding id for ``collate`` (the tokenizer's pad token, else EOS; never scored)."""
        pad = self.tokenizer.pad_token_id
        return self.eos_id if pad is None else pad

    def render(self, prompt: str) -> str:
        return render_prompt(
            self.tokenizer,
            prompt,
            use_chat_template=self.use_chat_template,
            prompt_template=self.prompt_template,
        )

    def _encode_prompt_full(self, prompt: str) -> list[int]:
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = list(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])
            if self.bos_id is not None and not self.chat and ids[:1] != [self.bos_id]:
                ids = [self.bos_id, *ids]
            if not ids:
                raise ValueError(
                    f"prompt {prompt!r} renders to zero tokens: nothing to condition on"
                )
            self._prompt_cache[prompt] = ids
        return ids

    def encode_response(self, response: str) -> list[int]:
        """Response ids (no special tokens added) followed by exactly one EOS, untruncated."""
        ids = list(self.tokenizer(response, add_special_tokens=False)["input_ids"])
        while ids and ids[-1] == self.eos_id:
            ids.pop()
        return [*ids, self.eos_id]

    def encode(self, prompt: str, response: str) -> TokenizedSeq:
        """Tokenize one pair with the truncation rules of the module docstring."""
        p_ids = self._encode_prompt_full(prompt)
        r_ids = self.encode_response(response)
        p_cut = len(p_ids) > self.max_prompt_tokens
        r_cut = len(r_ids) > self.max_response_tokens
        p_ids = p_ids[-self.max_prompt_tokens :]
        r_ids = r_ids[: self.max_response_tokens]
        ids = [*p_ids, *r_ids]
        if any(not isinstance(i, int) for i in ids):
            raise ValueError(f"non-integer token id in {ids[:8]}...")
        return TokenizedSeq(ids, len(p_ids), p_cut, r_cut)

    def encode_many(self, prompts: Sequence[str], responses: Sequence[str]) -> list[TokenizedSeq]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]

    def share_ids_from(self, other: Tokenization, *, force: bool = False) -> Tokenization:
        """The Tokenization whose ids this model may score: ``other`` if the tokenizers match.

        Reproduces the official MRPO code's ``same_ids`` mode safely (METHODS §4.1).

        Raises:
            TokenizerMismatchError: different vocabularies and not ``force``.
        """
        require_same_tokenizer(other.tokenizer, self.tokenizer, force=force)
        return other

    def fingerprint(self) -> str:
        """Changes whenever anything that changes the ids changes: tokenizer content, special
        tokens, chat template and its rendering (probed), plain template, max lengths."""
        if self._fingerprint is None:
            self._fingerprint = _digest(
                {
                    "v": TOKENIZATION_VERSION,
                    "tokenizer": tokenizer_digest(self.tokenizer),
                    "chat": self.chat,
                    "chat_template": self.tokenizer.chat_template if self.chat else None,
                    "prompt_template": self.prompt_template,
                    "probe": self.render(_PROBE_PROMPT),
                    "bos": self.bos_id,
                    "eos": self.eos_id,
                    "max": [self.max_prompt_tokens, self.max_response_tokens],
                }
            )
        return self._fingerprint

    def check_roundtrip(self, seq: TokenizedSeq, response: str) -> None:
        """Decoding the scored ids must give the response text plus exactly one EOS.

        A SentencePiece prefix space (``"Hello"`` -> ``" Hello"``) is tolerated.

        Raises:
            ValueError: the decoded response differs (a tokenisation bug), or EOS count != 1.
        """
        scored = seq.ids[seq.n_prompt :]
        if seq.response_truncated:
            raise ValueError("round-trip check needs an untruncated response")
        if scored.count(self.eos_id) != 1 or scored[-1] != self.eos_id:
            raise ValueError(f"expected exactly one trailing EOS, got ids {scored[-4:]}")
        text = self.tokenizer.decode(
            scored, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        expected = response + self.tokenizer.eos_token
        if text != expected and text.removeprefix(" ") != expected:
            raise ValueError(f"decoded response {text!r} != {expected!r}")


def truncation_counts(seqs: Sequence[TokenizedSeq]) -> dict[str, int]:
    """Counts for the logs: sequences, truncated prompts, truncated responses."""
    return {
        "sequences": len(seqs),
        "prompt_truncated": sum(s.prompt_truncated for s in seqs),
        "response_truncated": sum(s.response_truncated for s in seqs),
    }


def collate(
    seqs: Sequence[TokenizedSeq], pad_id: int, side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad a list of sequences to the longest one (dynamic padding).

    Args:
        seqs: N tokenized sequences.
        pad_id: id written at padding positions (masked out; never scored).
        side: ``right`` or ``left`` padding; log-probs do not depend on it (tested).

    Returns:
        ``input_ids`` (N, T) int64, ``attention_mask`` (N, T) int64 (1 = real token),
        ``loss_mask`` (N, T) int64 (1 = response token, EOS included), ``position_ids`` (N, T)
        int64 (0 at each sequence's first real token; 1 on padding, as ``generate`` does).
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    n, t = len(seqs), max((len(s.ids) for s in seqs), default=0)
    input_ids = torch.full((n, t), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, t), dtype=torch.long)
    loss_mask = torch.zeros((n, t), dtype=torch.long)
    for i, s in enumerate(seqs):
        start = t - len(s.ids) if side == "left" else 0
        end = start + len(s.ids)
        input_ids[i, start:end] = torch.tensor(s.ids, dtype=torch.long)
        attention_mask[i, start:end] = 1
        loss_mask[i, start + s.n_prompt : end] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "loss_mask": loss_mask,
        "position_ids": position_ids,
    }
