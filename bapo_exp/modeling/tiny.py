"""A tiny random-weight Llama and a BPE tokenizer trained in code (tests, debug, synthetic world).

Nothing here touches a hub: the tokenizer is trained on a given corpus with ``tokenizers`` and
the model is built from a ``LlamaConfig``. Both are saved with ``save_pretrained`` into a folder
keyed by a hash of the config and the corpus, and reload with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bapo_exp.config import TinyConfig
from bapo_exp.folders import build_folder

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Answer the question clearly and briefly.",
    "In academic terms, the evidence suggests a careful conclusion.",
    "From a business point of view, the return on investment matters most.",
    "Imagine a story full of fun, jokes and surprises!",
    "Like a poem, the river of words flows softly through the night.",
    "Question: What is the capital of France? Answer: Paris.",
    "Please explain how plants turn sunlight into energy.",
    "A helpful, honest and harmless assistant declines dangerous requests.",
    "The answer is A. The answer is B. The answer is C. The answer is D.",
] * 4


def corpus_digest(corpus: Sequence[str]) -> str:
    h = hashlib.sha256()
    for line in corpus:
        h.update(line.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def tiny_key(cfg: TinyConfig, corpus: Sequence[str]) -> str:
    payload = json.dumps({"cfg": asdict(cfg), "corpus": corpus_digest(corpus), "v": 1})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_tokenizer(corpus: Sequence[str], vocab_size: int):
    """Byte-level BPE trained on ``corpus``; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def build_tiny_model(cfg: TinyConfig, vocab_size: int):
    """A randomly initialised ``LlamaForCausalLM`` (seeded by ``cfg.seed``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return LlamaForCausalLM(config)


def ensure_tiny(
    cfg: TinyConfig, cache_dir: str | Path, corpus: Sequence[str] | None = None
) -> Path:
    """Build (once) and return the folder of a tiny model and tokenizer for ``cfg``."""
    corpus = list(corpus) if corpus is not None else DEFAULT_CORPUS
    out = Path(cache_dir) / f"tiny-{tiny_key(cfg, corpus)}"

    def build(tmp: Path) -> None:
        tokenizer = train_tokenizer(corpus, cfg.vocab_size)
        build_tiny_model(cfg, vocab_size=len(tokenizer)).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_folder(out, build, stamp=json.dumps(asdict(cfg)))
