"""The implicit persona judge (design, METHODS §6).

A response's judge score is the judge model's per-token log-likelihood of the response given
the prompt *with* the preference's instruction, minus that given the plain prompt:

    s(y) = [log p(y | x ⊕ I) - log p(y | x)] / |y|          (|y| = response tokens, EOS included)

``x ⊕ I`` is ``eval.judge_template`` (default ``"{prompt} {instruction}"``: the instruction follows
the request, as in P-Soups and ``persona_gen``). The judge scores *text* with its own tokenizer
and template, so it may be any causal LM; both terms go through the content-addressed reference
log-prob cache, so gold responses and base responses are scored once per judge across runs.

    judge = ImplicitJudge(reference, cache_root, template="{prompt} {instruction}")
    scores = judge.scores(prompts, responses, instructions)       # (N,) float32, per token
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bapo_exp.modeling.tokenize import TokenizerMismatchError

log = logging.getLogger(__name__)


def with_instruction(template: str, prompt: str, instruction: str) -> str:
    """The judge's conditioned prompt; ``template`` must hold ``{prompt}`` and ``{instruction}``."""
    if "{prompt}" not in template or "{instruction}" not in template:
        raise ValueError(
            f"eval.judge_template={template!r} must contain both {{prompt}} and {{instruction}}"
        )
    return template.format(prompt=prompt, instruction=instruction)


def check_vocab(model: Any, tokenizer: Any, name: str) -> None:
    """The judge's tokenizer must produce ids its model can embed.

    Raises:
        TokenizerMismatchError: the tokenizer has more ids than the model's embedding rows
            (a judge model paired with another model's tokenizer).
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise TokenizerMismatchError(
            f"judge {name!r}: its tokenizer ({getattr(tokenizer, 'name_or_path', '?')!r}) has "
            f"{len(tokenizer)} ids but the model embeds only {rows}; set the judge's "
            "`tokenizer` to the model's own (conf/model/<judge>.yaml)"
        )


class ImplicitJudge:
    """Scores responses with a ``modeling.reference_model.Reference`` (its own tokenizer, template).

    Args:
        reference: the judge model (loaded on first use; a policy's disabled adapter stays
            disabled while it scores).
        cache_root: the reference log-prob cache folder (``reference.cache_dir``).
        template: ``eval.judge_template``.
        batch_size: sequences per forward pass.
        name: for logs and errors.
    """

    def __init__(
        self, reference: Any, cache_root: str, *, template: str, batch_size: int, name: str
    ) -> None:
        from bapo_exp.modeling.logp_cache import ReferenceCache

        with_instruction(template, "p", "i")  # fail early on a bad template
        self.reference, self.template = reference, template
        self.batch_size, self.name = batch_size, name
        self.tokenization = reference.tokenization()  # loads the model
        check_vocab(reference.module, reference.tokenizer, name)
        self.cache = ReferenceCache(
            cache_root, reference.fingerprint(), self.tokenization.fingerprint(), reduce="sum"
        )

    def _logps(self, prompts: list[str], responses: list[str]) -> tuple[Tensor, Tensor]:
        from bapo_exp.modeling.logp_cache import cached_logps

        lp, nt, n_new = cached_logps(
            self.reference, self.tokenization, prompts, responses, self.cache,
            batch_size=self.batch_size, desc=f"judge {self.name} scores {len(prompts)} texts",
        )  # fmt: skip
        log.info("judge %s: %d sequences, %d scored (rest cached)", self.name, len(lp), n_new)
        return lp, nt

    def scores(
        self, prompts: Sequence[str], responses: Sequence[str], instructions: Sequence[str]
    ) -> Tensor:
        """Per-token judge scores s(y), (N,) float32, in input order (one batched pass)."""
        if not len(prompts) == len(responses) == len(instructions):
            raise ValueError(
                f"{len(prompts)} prompts, {len(responses)} responses, "
                f"{len(instructions)} instructions"
            )
        if not prompts:
            return torch.zeros(0)
        pairs = zip(prompts, instructions, strict=True)
        conditioned = [with_instruction(self.template, p, i) for p, i in pairs]
        lp, nt = self._logps([*conditioned, *prompts], [*responses, *responses])
        n = len(prompts)
        return (lp[:n] - lp[n:]) / nt[:n].clamp(min=1).float()
