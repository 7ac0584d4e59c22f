"""Prompt rendering shared by generation, scoring and training (METHODS §1).

from bapo_exp.modeling.template import render_prompt
"""

from __future__ import annotations

from typing import Any


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer defines a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    tokenizer: Any, prompt: str, *, use_chat_template: bool, prompt_template: str
) -> str:
    """Render one user prompt as the text the model continues.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the user's message (plain text, not yet templated).
        use_chat_template: use the tokenizer's chat template when it has one (one user turn,
            ``add_generation_prompt=True``).
        prompt_template: fallback format string with a ``{prompt}`` field, e.g. ``"{prompt}\\n"``.
    Returns:
        The rendered prompt string (special tokens as text, e.g. ``<|im_start|>``).
    """
    if use_chat_template and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt_template.format(prompt=prompt)
