"""lm-eval model backends: ours (``bapo``) and lm-eval's ``HFLM`` with clear length errors (``hf``).

    lm = make_backend("bapo", model, tokenizer, batch_size=8, token_budget=2048)
    lm_eval.simple_evaluate(model=lm, tasks=[...])
    # or through lm-eval's registry, after `import bapo_exp.evaluation.backend`:
    lm_eval.simple_evaluate(model="bapo", model_args="pretrained=<folder>,token_budget=2048")

``BapoLM`` (registered as ``bapo``, ``eval.backend=bapo``, the default) is ``HFLM`` with another
``loglikelihood`` scorer: requests are encoded by ``HFLM``'s own code (``TemplateLM.
loglikelihood``, ``_encode_pair``, ``tok_encode``: BOS, trailing spaces, empty contexts) and
truncated from the left exactly as ``HFLM._loglikelihood_tokens`` does; then every distinct
context runs once with its continuations in the padding-free layout, the LM head and the
log-softmax only on continuation positions, in batches of ``token_budget`` distinct tokens
(``modeling.continuations``). Results equal ``HFLM``'s up to float rounding (tested).
``loglikelihood_rolling`` and ``generate_until`` are ``HFLM``'s.

``CheckedHFLM`` (``eval.backend=hf``) is ``HFLM`` unchanged except for the length check below.

Lengths (both backends): a context too long for the model's window (``max_length``) loses
tokens on the left, as lm-eval does; one log line per call counts them and names the first.
A continuation longer than the window cannot be scored: a ``ValueError`` names the task, the
item (doc index), the choice and the lengths (``HFLM`` alone stops on a bare assertion).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm.auto import tqdm

from bapo_exp.choices import EvalBackend
from bapo_exp.modeling.continuations import (
    plan_scoring,
    score_continuations,
    truncate_like_hflm,
)
from bapo_exp.modeling.scoring import model_device

log = logging.getLogger(__name__)

BACKENDS = tuple(EvalBackend.names())


def check_lengths(instances: list, encoded: list, max_length: int) -> None:
    """Raise on a request lm-eval cannot score; log the ones whose context it truncates.

    Args:
        instances: the ``Instance`` list given to ``loglikelihood`` (task name, doc index).
        encoded: ``TemplateLM.loglikelihood``'s ``((context, continuation), ctx_ids,
            cont_ids)`` for the same requests, in the same order.
        max_length: the model's window (``HFLM.max_length``).

    Raises:
        ValueError: an empty context or continuation, or a continuation longer than the window.
    """
    truncated = []
    for inst, (_, ctx, cont) in zip(instances, encoded, strict=True):
        where = f"task {inst.task_name} item {inst.doc_id} (choice {inst.idx})"
        lengths = f"context {len(ctx)} tokens, continuation {len(cont)} tokens"
        if not ctx or not cont:
            raise ValueError(f"{where}: nothing to score ({lengths})")
        if len(cont) > max_length:
            raise ValueError(
                f"{where}: the continuation does not fit the model's window ({lengths}, model "
                f"max length {max_length}); lm-eval cannot score it. Use a model with a longer "
                "context or leave this suite out (eval.suites)"
            )
        if len(ctx) + len(cont) > max_length + 1:
            truncated.append((where, lengths))
    if truncated:
        log.warning(
            "%d of %d requests: context truncated from the left to fit the model's max length "
            "%d, as lm-eval's HFLM does; first: %s, %s",
            len(truncated), len(encoded), max_length, *truncated[0],
        )  # fmt: skip


_ENCODINGS: OrderedDict[str, dict] = OrderedDict()  # tokenizer key -> (context, cont) -> encoding
_PLANS: OrderedDict[tuple, list] = OrderedDict()  # (token budget, device, requests) -> forwards
MAX_KEPT = 4  # tokenizers' encodings and request lists' plans a process keeps


def kept(cache: OrderedDict, key: Any, make, limit: int = MAX_KEPT, drop=None) -> Any:
    """``cache[key]``, made on first use; the least recently used entries beyond ``limit`` are
    removed (and given to ``drop``, e.g. to close them)."""
    if key not in cache:
        cache[key] = make()
        while len(cache) > limit:
            old = cache.popitem(last=False)[1]
            if drop is not None:
                drop(old)
    cache.move_to_end(key)
    return cache[key]


def tokenizer_key(lm: Any) -> str | None:
    """What ``TemplateLM._encode_pair`` depends on besides its text: the tokenizer (a fast
    tokenizer's whole definition), BOS handling and the backend; None for a slow tokenizer."""
    backend = getattr(lm.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    text = repr((backend.to_str(), type(lm.tokenizer).__name__, lm.add_bos_token,
                 lm.prefix_token_id, lm.backend))  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


class _Checked:
    """Keeps the ``Instance`` list of the current ``loglikelihood`` call for
    ``_loglikelihood_tokens`` (where lengths are known); ``None`` in ``loglikelihood_rolling``,
    which calls ``_loglikelihood_tokens`` itself."""

    _instances: list | None = None
    _pairs: dict | None = None  # (context, continuation) -> its encoding (TemplateLM's rules)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """``TemplateLM._encode_pair``, once per distinct pair and tokenizer for the life of the
        process: a model evaluated again (``harness.SuiteSession``, e.g. at several training
        steps) and the next cell of a warm worker with the same tokenizer are not tokenized
        again. The encodings depend on the tokenizer only (``tokenizer_key``)."""
        if self._pairs is None:
            key = tokenizer_key(self)
            self._pairs = {} if key is None else kept(_ENCODINGS, key, dict)
        key = (context, continuation)
        if key not in self._pairs:
            self._pairs[key] = super()._encode_pair(context, continuation)
        return self._pairs[key]

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list:
        self._instances = requests
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._instances = None

    def _checked(self, requests: list) -> bool:
        """Whether ``requests`` are the current call's (then checked), not rolling windows."""
        inst = self._instances
        if inst is None or len(inst) != len(requests):
            return False
        check_lengths(inst, requests, self.max_length)
        return True


@register_model("bapo_hf")
class CheckedHFLM(_Checked, HFLM):
    """lm-eval's ``HFLM`` with a clear error for a continuation longer than the window."""

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        self._checked(requests)
        return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)


@register_model("bapo")
class BapoLM(_Checked, HFLM):
    """``HFLM`` whose ``loglikelihood`` runs each distinct context once (module docstring).

    Args:
        token_budget: distinct tokens per forward pass of the scorer.
        **kwargs: ``HFLM``'s (``pretrained`` an in-memory model, plain, PEFT or merged, or a
            folder; ``tokenizer``; ``batch_size`` for ``generate_until`` and rolling requests).
    """

    def __init__(self, *args: Any, token_budget: int | str = 2048, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_budget = int(token_budget)
        if self.backend != "causal":
            raise ValueError(f"eval.backend=bapo scores causal LMs only, not {self.backend}")

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        if not self._checked(requests):  # rolling windows: HFLM's own scorer
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        pairs = [truncate_like_hflm(ctx, cont, self.max_length) for _, ctx, cont in requests]
        bar = tqdm(total=len(pairs), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests (bapo)")  # fmt: skip
        with bar:
            out = score_continuations(self.model, pairs, token_budget=self.token_budget,
                                      progress=bar, plan=self._plan(pairs))  # fmt: skip
        for (request_str, _, _), answer in zip(requests, out, strict=True):
            if request_str is not None:
                self.cache_hook.add_partial("loglikelihood", request_str, answer)
        return out

    def _plan(self, pairs: list) -> list:
        """The scorer's forwards for these requests, planned once per distinct request list in
        the process (the same suite scored again, at another training step or in a warm
        worker's next cell, reuses its plan)."""
        device = model_device(self.model)
        key = (self.token_budget, str(device), tuple((tuple(c), tuple(x)) for c, x in pairs))
        return kept(_PLANS, key, lambda: plan_scoring(pairs, token_budget=self.token_budget,
                                                       device=device))  # fmt: skip


def make_backend(
    backend: str, model: Any, tokenizer: Any, *, batch_size: int = 8, token_budget: int = 2048
):
    """An lm-eval LM for an in-memory causal LM (plain, PEFT-wrapped or merged).

    Raises:
        ValueError: for an unknown backend name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"eval.backend={backend!r}; choose one of {list(BACKENDS)}")
    common = {"pretrained": model, "tokenizer": tokenizer, "batch_size": batch_size,
              "backend": "causal"}  # fmt: skip
    if backend == "hf":
        return CheckedHFLM(**common)
    return BapoLM(token_budget=token_budget, **common)
