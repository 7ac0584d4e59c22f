"""Typed config schemas, registered in Hydra's ConfigStore as ``base_*``.

YAML files under ``conf/`` hold values and start with ``defaults: [base_xxx]``; these
dataclasses hold the schema, so a misspelt key or a wrong type fails at composition.
Stage functions receive these dataclasses (``OmegaConf.to_object``), never ``DictConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# conf/ sits beside the package (editable install); an absolute path works for `python -m`.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

NOT_LOSS = {"loss": False}  # field metadata: not a keyword argument of the loss function


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # [] = the family default (modeling.load.LORA_TARGET_MODULES, else PEFT's own mapping)
    target_modules: list[str] = field(default_factory=list)


@dataclass
class TinyConfig:
    """Random-weight Llama built in code (tests, debug, synthetic world)."""

    vocab_size: int = 512
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 512
    seed: int = 0


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
    threads: int | None = 1  # torch intra-op threads once loaded (null = leave as is)


@dataclass
class ModelConfig:
    name: str = MISSING  # file stem in conf/model/
    source: str = "hf"  # hf (hub id or local folder) | tiny (built in code) | gguf (packaged file)
    pretrained: str = MISSING  # hub id, local folder, or for gguf "package:file" / a .gguf path
    tokenizer: str | None = None  # default: same as pretrained
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa_unpadded"  # sdpa_unpadded | sdpa | eager | flash_attention_2
    gradient_checkpointing: bool = False
    finetune: str = "lora"  # lora | full
    lora: LoraConfig = field(default_factory=LoraConfig)
    use_chat_template: bool = True  # use the tokenizer's chat template when it has one
    prompt_template: str = "{prompt}\n"  # used when there is no chat template (METHODS §1)
    max_prompt_tokens: int = 256  # prompts are truncated from the left
    max_response_tokens: int = 256  # responses are truncated from the right
    tiny: TinyConfig = field(default_factory=TinyConfig)
    micro: MicroConfig = field(default_factory=MicroConfig)


@dataclass
class ReferenceModelConfig:
    """An extra MRPO reference: its own model, tokenizer and template (METHODS §4.1)."""

    name: str = MISSING
    source: str = "hf"
    pretrained: str = MISSING
    tokenizer: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa_unpadded"  # sdpa_unpadded | sdpa | eager | flash_attention_2
    use_chat_template: bool = True
    prompt_template: str = "{prompt}\n"
    max_prompt_tokens: int = 256
    max_response_tokens: int = 256
    tiny: TinyConfig = field(default_factory=TinyConfig)
    micro: MicroConfig = field(default_factory=MicroConfig)


@dataclass
class DataConfig:
    name: str = MISSING  # key in bapo_exp.data.DATASETS
    path: str | None = None  # main file (DSP test json, pairs, prompts); null = under data_root
    train_path: str | None = None  # official train file where one exists (DSP train split)
    preferences: list[str] = field(default_factory=list)  # DSP domains / persona ids / styles
    include_normal: bool = False  # DSP: also use the `normal` response as a rejected one
    strip_persona_prompt: bool = True  # P-Soups: remove the persona instruction from prompts
    heldout_frac: float = 0.2  # by query, when no official held-out split is available
    split_seed: int = 0
    n_train: int | None = None  # total training pairs after mixing (null = all)
    n_heldout: int | None = None  # held-out pairs kept for evaluation (null = all)
    mix_seed: int = 0
    writer: str | None = None  # generated persona pairs: model config name of the writer
    personas: dict[str, str] = field(default_factory=dict)  # persona_gen: id -> instruction
    # preference -> instruction text for the implicit persona judge (design, METHODS §6);
    # persona_gen falls back to `personas`
    instructions: dict[str, str] = field(default_factory=dict)
    max_new_tokens: int = 256  # persona_gen: writer budget per answer
    gen_batch_size: int = 8  # persona_gen: prompts per generate call
    do_sample: bool = False  # persona_gen decoding (greedy by default)
    temperature: float = 1.0
    top_p: float = 1.0
    empty_responses: str = "error"  # error | drop (dropped pairs are counted in the report)
    drop_duplicates: bool = True  # repeated (prompt, chosen, rejected), counted
    drop_identical: bool = True  # chosen == rejected, counted
    max_chars: int | None = None  # drop (and count) pairs longer than this
    world: dict[str, Any] = field(default_factory=dict)  # synthetic: WorldConfig knobs


@dataclass
class MethodConfig:
    name: str = MISSING  # key in bapo_exp.losses.LOSSES, or "none" (no training)
    beta: float = 0.1
    label_smoothing: float = 0.0

    def loss_kwargs(self) -> dict[str, Any]:
        """Flatten the method's fields into the loss function's keyword arguments."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "name" or f.metadata.get("loss") is False:
                continue
            value = getattr(self, f.name)
            if hasattr(value, "__dataclass_fields__"):
                for g in fields(value):
                    if g.metadata.get("loss") is not False:
                        out[f"{f.name}_{g.name}"] = getattr(value, g.name)
            else:
                out[f.name] = value
        return out


@dataclass
class NoMethodConfig(MethodConfig):
    name: str = "none"


@dataclass
class DPOConfig(MethodConfig):
    name: str = "dpo"


@dataclass
class IPOConfig(MethodConfig):
    name: str = "ipo"
    label_smoothing: float = field(default=0.0, metadata=NOT_LOSS)


@dataclass
class AnchorConfig:
    type: str = "hinge"  # hinge | abs | sq | nll | none   (design, METHODS §3)
    weight: float = 1.0  # lambda; 0 reduces to DPO
    margin: float = 0.0  # nats, hinge only
    reduce: str = "sum"  # sum | mean (per-token mean of Delta_b)
    prompts: str = field(default="train", metadata=NOT_LOSS)  # train | file (design)
    prompt_file: str | None = field(default=None, metadata=NOT_LOSS)


@dataclass
class BAPOConfig(MethodConfig):
    name: str = "bapo"
    anchor: AnchorConfig = field(default_factory=AnchorConfig)


@dataclass
class MRPOConfig(MethodConfig):
    name: str = "mrpo"
    ctro_eps: float = 0.1  # CTRO clipping band
    eps_split: str = "adaptive"  # adaptive | fixed
    weights: list[float] | None = None  # null = ARWC adaptive weights; else fixed (normalised)
    weight_assignment: str = "harmonic"  # harmonic | official_k2 (design, METHODS §4.4)
    references: list[ReferenceModelConfig] = field(default_factory=list, metadata=NOT_LOSS)


@dataclass
class ReferenceStageConfig:
    precompute: bool = True  # false: reference log-probs computed online in every step
    cache_dir: str = "${paths.cache_dir}/reference"
    batch_size: int = 8
    reduce: str = "sum"  # sum | mean (METHODS §1)
    do_sample: bool = False  # base responses: greedy by default (METHODS §3)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # null = model.max_response_tokens
    # prompts decoded together; greedy rows leave the batch when done (modeling/greedy.py), and
    # CPU decoding is bound by reading the weights, so large batches pay (BENCHMARKS.md)
    gen_batch_size: int = 32


@dataclass
class TrainConfig:
    steps: int | None = 100  # optimizer steps; null = use epochs
    epochs: float = 1.0
    batch_size: int = 8  # pairs per micro-batch
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | linear | constant
    max_grad_norm: float = 1.0
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    log_every: int = 1
    ckpt_every: int = 50
    keep_checkpoints: int = 2
    probe_size: int = 16  # fixed probe set for the drift metrics
    init_adapter: str | None = None  # continue a trained adapter: it becomes the frozen reference


@dataclass
class EvalConfig:
    suites: list[str] = field(default_factory=lambda: ["mmlu", "scienceqa", "hhh"])
    limit: int | None = None  # per task (lm-eval --limit)
    batch_size: int = 8  # held-out scoring and judge; hf backend: requests per forward
    # lm-eval model backend (design): bapo = ours, each distinct context run once in the
    # padding-free layout, LM head only on continuations (evaluation/backend.py; same
    # log-likelihoods as hf up to float rounding); hf = lm-eval's HFLM, kept for comparison
    backend: str = "bapo"
    token_budget: int = 2048  # bapo backend: distinct tokens per forward pass
    num_fewshot: int = 0  # MMLU: 0 (default) or 5 from the dev split
    mmlu_subjects: list[str] | None = None  # null = all 57
    mc_format: str = "auto"  # auto (letter: real suites; options: synthetic) | letter | options
    ckpt: str | None = None  # score this checkpoint instead of the run's own
    personalisation: bool = True
    gen_prompts: int = 32  # held-out prompts for generated personalisation
    gen_max_new_tokens: int | None = None
    gen_batch_size: int | None = 32  # prompts decoded together; null = eval.batch_size
    judge: str | None = None  # conf/model/ name of the judge; null = main reference; "none" = off
    judge_template: str = "{prompt} {instruction}"  # judge's prompt with the instruction (design)
    style_check: str | None = None  # "module:function" exact style check; null = by data.name
    significance_z: float = 1.0  # standard errors a rate must clear for a verdict (design)


@dataclass
class LoggerConfig:
    name: str = "none"  # wandb | none
    project: str = "bapo-exp"
    entity: str | None = None
    mode: str = "auto"  # auto (online with an API key, else offline) | offline | online | disabled
    tags: list[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    root: str = "."
    data_root: str = "${paths.root}/../shared/data"
    runs_dir: str = "${paths.root}/runs"
    cache_dir: str = "${paths.runs_dir}/cache"
    ckpt_root: str | None = None  # cluster scratch for checkpoints; null = inside the run dir


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    method: MethodConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    reference: ReferenceStageConfig = field(default_factory=ReferenceStageConfig)
    name: str = "adhoc"
    stages: list[str] = field(default_factory=lambda: ["reference", "train", "eval"])
    seed: int = 0
    force: bool = False
    objective: str | None = None


METHOD_SCHEMAS: dict[str, type[MethodConfig]] = {
    "none": NoMethodConfig,
    "dpo": DPOConfig,
    "ipo": IPOConfig,
    "bapo": BAPOConfig,
    "mrpo": MRPOConfig,
}


def _synthetic_world_dir(cache_dir: str, knobs: Any) -> str:
    """``${synthetic_world:<cache_dir>,<knobs>}``: the cache-keyed folder of a synthetic world."""
    from omegaconf import OmegaConf

    from bapo_exp.synthetic.export import world_dir  # lazy: only when a config uses it

    plain = OmegaConf.to_container(knobs, resolve=True) if OmegaConf.is_config(knobs) else knobs
    return str(world_dir(plain or {}, cache_dir))


def register_resolvers() -> None:
    """OmegaConf resolvers used by ``conf/`` (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("synthetic_world"):
        OmegaConf.register_new_resolver("synthetic_world", _synthetic_world_dir)


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent), and register the resolvers."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="train", name="base_train", node=TrainConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)
    for key, schema in METHOD_SCHEMAS.items():
        cs.store(group="method", name=f"base_{key}", node=schema)
