"""The implicit persona judge ranks an answer written under the instruction above a plain one.

The tiny model is taught (plain LM training, a few dozen full-batch steps) that a request
followed by the instruction is answered in a pirate voice and a plain request plainly. The judge
built on it must then score every pirate answer above the plain answer to the same prompt,
which the untrained model does not do on average.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bapo_exp.config import ModelConfig
from bapo_exp.evaluation.judge import ImplicitJudge
from bapo_exp.modeling.logps import sequence_logps
from bapo_exp.modeling.tokenize import Tokenization, collate
from bapo_exp.reference_tables import Reference

INSTRUCTION = "Answer like a pirate."
TEMPLATE = "{prompt} {instruction}"
EXAMPLES = [  # (prompt, answer under the instruction, plain answer)
    ("Tell me about the sea.", "Arr, matey! The sea be wide and wild.", "The sea is wide."),
    ("What is a cat?", "Arr, matey! A cat be a small hunter.", "A cat is a small animal."),
    ("Where is the map?", "Arr, matey! The map be in me chest.", "The map is on the table."),
    ("How old is the ship?", "Arr, matey! She be a hundred years.", "The ship is old."),
    ("Can you sing?", "Arr, matey! I be singin' all night.", "Yes, I can sing."),
    ("What time is it?", "Arr, matey! It be time for the tide.", "It is noon."),
]
CFG = ModelConfig(name="tiny", source="tiny", pretrained="tiny", use_chat_template=False,
                  max_prompt_tokens=48, max_response_tokens=48)  # fmt: skip


def lm_train(model, tok: Tokenization, steps: int = 20, lr: float = 5e-3) -> list[float]:
    """Plain next-token training on (prompt[+instruction], answer); returns the losses."""
    prompts = [f"{p} {INSTRUCTION}" for p, _, _ in EXAMPLES] + [p for p, _, _ in EXAMPLES]
    answers = [a for _, a, _ in EXAMPLES] + [b for _, _, b in EXAMPLES]
    batch = collate(tok.encode_many(prompts, answers), tok.pad_id, side="right")
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        lp, nt = sequence_logps(out.logits, batch["input_ids"], batch["loss_mask"])
        loss = -lp.sum() / nt.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def judge_margins(model, tokenizer, cache: Path) -> torch.Tensor:
    """s(pirate answer) - s(plain answer) per prompt, from a judge on ``model``."""
    judge = ImplicitJudge(Reference(CFG, str(cache), model, tokenizer), str(cache / "ref"),
                          template=TEMPLATE, batch_size=8, name="tiny")  # fmt: skip
    n = len(EXAMPLES)
    scores = judge.scores([p for p, _, _ in EXAMPLES] * 2,
                          [a for _, a, _ in EXAMPLES] + [b for _, _, b in EXAMPLES],
                          [INSTRUCTION] * (2 * n))  # fmt: skip
    return scores[:n] - scores[n:]


def test_judge_prefers_the_instructed_answer_after_training(tiny_dir: Path, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    before = judge_margins(model, tokenizer, tmp_path / "before")
    losses = lm_train(model, Tokenization.from_config(tokenizer, CFG))
    assert losses[-1] < 0.5 * losses[0]  # it learnt the texts
    after = judge_margins(model, tokenizer, tmp_path / "after")
    assert (after > 0).all(), after  # every instructed answer ranked above the plain one
    assert after.mean() > before.mean() + 0.2  # nats per token: the training did it
