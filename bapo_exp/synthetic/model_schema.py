"""The micro model source's own settings (``model.micro``, ``method.references[i].micro``): the
core ``ModelSpec`` knows none of them. The plug-in registers these schemas
(``register_model_schema``): ``conf/model/micro.yaml`` extends ``/schema/model/micro``
(``MicroModelConfig``), and a reference of ``source: micro`` is checked against ``MicroSpec``.

    MicroModelConfig(name="micro", source="micro", pretrained="micro", micro=MicroConfig(steps=5))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bapo_exp.choices import Choice
from bapo_exp.config import ModelConfig, ModelSpec


class Kernels(Choice):
    portable = "portable"  # micro pretraining with pinned kernels (docs/REPRODUCIBILITY.md)
    native = "native"


@dataclass
class MicroConfig:
    """``source: micro``: a micro Llama pretrained by the project on the synthetic world.

    The architecture is ``tiny``; the world is ``world`` (knobs of ``bapo_exp.synthetic.
    WorldConfig``, normally ``${data.world}``); ``style_exposure`` (when set) replaces the
    world's: how much of each preference style this base saw in pretraining.
    """

    world: dict[str, Any] = field(default_factory=dict)
    style_exposure: dict[str, float] | None = None
    steps: int = 800  # pretraining steps (MicroTrainConfig)
    seed: int = 0  # pretraining data order (the init seed is tiny.seed)
    lr: float = 3.0e-3
    batch_size: int = 32
    # portable (default): pretrain with pinned kernels, the same base on every Intel x86-64 CPU
    # (+25% CPU time); native: the machine's own (bases then differ across CPUs: design, ours)
    kernels: Kernels = Kernels.portable


@dataclass
class MicroSpec(ModelSpec):
    """A model spec of ``source: micro`` (an MRPO reference): the core spec plus ``micro``."""

    micro: MicroConfig = field(default_factory=MicroConfig)  # pretraining


@dataclass
class MicroModelConfig(ModelConfig, MicroSpec):
    """``model=micro``: the policy's ``ModelConfig`` plus ``micro`` (``/schema/model/micro``)."""
