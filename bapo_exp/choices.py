"""The fixed choices of the config, as Enums shared by the schema and the code.

OmegaConf validates an Enum-typed field at composition (``reference.reduce=avg`` fails and
lists the valid names); the code compares with plain strings, because every choice is a
``str`` whose value equals its name (``Reduce.sum == "sum"``). Choices that plug-ins extend
(datasets, model sources, methods, eval suites, style checks) are registries instead
(``bapo_exp.registry``).
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A config choice: a ``str`` that prints, formats and hashes as its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def names(cls) -> list[str]:
        return [m.value for m in cls]


class Dtype(Choice):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Finetune(Choice):
    lora = "lora"
    full = "full"


class Schedule(Choice):
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class Precision(Choice):
    auto = "auto"  # bf16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Reduce(Choice):
    sum = "sum"
    mean = "mean"


class AnchorType(Choice):
    hinge = "hinge"
    abs = "abs"
    sq = "sq"
    nll = "nll"
    none = "none"


class AnchorPrompts(Choice):
    train = "train"  # base responses to the training prompts (our reading of the paper)
    file = "file"  # base responses to a separate prompt set (method.anchor.prompt_file)


class EpsSplit(Choice):
    adaptive = "adaptive"
    fixed = "fixed"


class WeightAssignment(Choice):
    auto = "auto"  # official_k2 for K=2 (the official code), harmonic for K > 2
    official_k2 = "official_k2"
    harmonic = "harmonic"  # our reading (design), the only form for K > 2


class EvalBackend(Choice):
    bapo = "bapo"  # ours (evaluation/backend.py)
    hf = "hf"  # lm-eval's HFLM


class McFormat(Choice):
    auto = "auto"
    letter = "letter"
    options = "options"


class MmluCategories(Choice):
    lm_eval = "lm_eval"  # lm-eval's subject groups (comparable with lm-eval's mmlu numbers)
    hendrycks = "hendrycks"  # <data_root>/mmlu/subject_categories.json (hendrycks' mapping)


class LoggerName(Choice):
    none = "none"
    wandb = "wandb"


class LoggerMode(Choice):
    auto = "auto"
    offline = "offline"
    online = "online"
    disabled = "disabled"


class EmptyResponses(Choice):
    error = "error"
    drop = "drop"
