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

from bapo_exp.choices import (
    AnchorPrompts,
    AnchorType,
    Dtype,
    EmptyResponses,
    EpsSplit,
    EvalBackend,
    Finetune,
    Kernels,
    LoggerMode,
    LoggerName,
    McFormat,
    MmluCategories,
    Precision,
    Reduce,
    Schedule,
    WeightAssignment,
)
from bapo_exp.registry import Registry

# conf/ sits beside the package (editable install); an absolute path works for `python -m`.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

NOT_LOSS = {"loss": False}  # field metadata: not a keyword argument of the loss function
# Top-level keys that do not change what a run computes: a re-launch of an existing run may set
# them (re-evaluation, other paths or tracker), and a multirun cell's identity leaves them out
# (bapo_exp.run.identity). Everything else is fixed by the run's saved .hydra/config.yaml.
RUN_INDEPENDENT = ("stages", "force", "eval", "logger", "paths", "name", "objective")
RUN_INDEPENDENT_KEYS = ("reference.cache_dir",)  # nested keys of the same kind (a cache folder)


class ConfigError(ValueError):
    """A setting that cannot work; the message names the config key."""


def run_independent(key: str) -> bool:
    """Whether the dotted ``key`` leaves what a run computes unchanged (see above)."""
    return key.split(".", 1)[0] in RUN_INDEPENDENT or key in RUN_INDEPENDENT_KEYS


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # [] = the family default (modeling.policy.LORA_TARGET_MODULES, else PEFT's own mapping)
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
    # portable (default): pretrain with pinned kernels, the same base on every Intel x86-64 CPU
    # (+25% CPU time); native: the machine's own (bases then differ across CPUs: design, ours)
    kernels: Kernels = Kernels.portable


@dataclass
class ModelSpec:
    """What loads a model and scores text with it: the policy's base and every reference."""

    name: str = MISSING  # file stem in conf/model/
    # a key of bapo_exp.modeling.sources.MODEL_SOURCES: hf (hub id or local folder) | tiny (built in
    # code) | gguf (packaged file) | micro (the synthetic world's pretrained base, a plug-in)
    source: str = "hf"
    pretrained: str = MISSING  # hub id, local folder, or for gguf "package:file" / a .gguf path
    tokenizer: str | None = None  # default: same as pretrained
    dtype: Dtype = Dtype.float32
    attn_implementation: str = "sdpa_unpadded"  # sdpa_unpadded | sdpa | eager | flash_attention_2
    use_chat_template: bool = True  # use the tokenizer's chat template when it has one
    prompt_template: str = "{prompt}\n"  # used when there is no chat template (METHODS §1)
    max_prompt_tokens: int = 256  # prompts are truncated from the left
    max_response_tokens: int = 256  # responses are truncated from the right
    tiny: TinyConfig = field(default_factory=TinyConfig)  # source=tiny / micro: architecture
    micro: MicroConfig = field(default_factory=MicroConfig)  # source=micro: pretraining


@dataclass
class ModelConfig(ModelSpec):
    """The policy: a ``ModelSpec`` plus how it is fine-tuned."""

    gradient_checkpointing: bool = False
    finetune: Finetune = Finetune.lora
    lora: LoraConfig = field(default_factory=LoraConfig)
    # torch intra-op threads of a run with this model, set once by the entrypoint (null = torch's
    # default); micro models run faster on 1, 2 threads on a busy 2-core CPU were 20x slower
    threads: int | None = None


@dataclass
class DataConfig:
    """What every data source reads; a source's own settings live in its schema
    (``DATA_SCHEMAS``: ``conf/data/<name>.yaml`` extends ``/schema/data/<name>``)."""

    name: str = MISSING  # key in bapo_exp.data.DATASETS
    path: str | None = None  # main file (DSP test json, pairs, prompts); null = under data_root
    preferences: list[str] = field(default_factory=list)  # DSP domains / persona ids / styles
    heldout_frac: float = 0.2  # by query, when no official held-out split is available
    split_seed: int = 0
    n_train: int | None = None  # total training pairs after mixing (null = all)
    n_heldout: int | None = None  # held-out pairs kept for evaluation (null = all)
    mix_seed: int = 0
    # preference -> instruction text for the implicit persona judge (design, METHODS §6);
    # persona_gen falls back to `personas`
    instructions: dict[str, str] = field(default_factory=dict)
    empty_responses: EmptyResponses = EmptyResponses.error  # drop: counted in the report
    drop_duplicates: bool = True  # repeated (prompt, chosen, rejected), counted
    drop_identical: bool = True  # chosen == rejected, counted
    max_chars: int | None = None  # drop (and count) pairs longer than this


@dataclass
class DSPDataConfig(DataConfig):
    train_path: str | None = None  # official train file (DSP train split)
    include_normal: bool = False  # also use the `normal` response as a rejected one


@dataclass
class PSoupsDataConfig(DataConfig):
    strip_persona_prompt: bool = True  # remove the persona instruction from prompts


@dataclass
class PersonaGenDataConfig(DataConfig):
    strip_persona_prompt: bool = True  # prompts without the persona instruction
    writer: str | None = None  # model config name of the writer of the persona answers
    personas: dict[str, str] = field(default_factory=dict)  # persona id -> instruction
    max_new_tokens: int = 256  # writer budget per answer
    gen_batch_size: int = 8  # prompts per generate call
    do_sample: bool = False  # decoding (greedy by default)
    temperature: float = 1.0
    top_p: float = 1.0


# The fields of the one DataConfig every source shared before per-source schemas (until
# 4ff31f6), with their defaults then. A source whose schema lacks one is read as if it held this
# default: a run's identity hashes them (bapo_exp.run.identity), so every cell finished before
# keeps its identity and folder, and a saved config that holds them at these values loads
# (typed_config). A saved value other than the default is an error naming the key.
LEGACY_DATA_FIELDS: dict[str, Any] = {
    "train_path": None, "include_normal": False, "strip_persona_prompt": True, "writer": None,
    "personas": {}, "max_new_tokens": 256, "gen_batch_size": 8, "do_sample": False,
    "temperature": 1.0, "top_p": 1.0, "world": {},
}  # fmt: skip


@dataclass
class MethodConfig:
    name: str = MISSING  # key in bapo_exp.losses.LOSSES ("none": no training)
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

    def reference_models(self) -> list[ModelSpec]:
        """Extra references beside the main one (the policy's initial model): MRPO's K-1."""
        return []

    def length_divisions(self) -> list[str]:
        """Settings of this method that divide by response length themselves (METHODS §2-3)."""
        return []

    def problems(self) -> list[str]:
        """Settings that contradict each other (checked before any work)."""
        return []

    def anchor_prompt_file(self) -> str | None:
        """The prompt set whose base responses anchor the policy, if not the training prompts."""
        return None


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
    type: AnchorType = AnchorType.hinge  # (design, METHODS §3)
    weight: float = 1.0  # lambda; 0 reduces to DPO
    margin: float = 0.0  # nats, hinge only
    reduce: Reduce = Reduce.sum  # mean: per-token mean of Delta_b
    # which prompts get base responses y_b (design, METHODS §3): train = the training prompts;
    # file = a separate prompt set (prompt_file: a JSON list of strings or {"id", "prompt"})
    prompts: AnchorPrompts = field(default=AnchorPrompts.train, metadata=NOT_LOSS)
    prompt_file: str | None = field(default=None, metadata=NOT_LOSS)


@dataclass
class BAPOConfig(MethodConfig):
    name: str = "bapo"
    anchor: AnchorConfig = field(default_factory=AnchorConfig)

    def length_divisions(self) -> list[str]:
        return ["method.anchor.reduce=mean"] if self.anchor.reduce == "mean" else []

    def problems(self) -> list[str]:
        if self.anchor.prompts == "file" and not self.anchor.prompt_file:
            return ["method.anchor.prompts=file needs method.anchor.prompt_file (a JSON list)"]
        return []

    def anchor_prompt_file(self) -> str | None:
        return self.anchor.prompt_file if self.anchor.prompts == "file" else None


@dataclass
class MRPOConfig(MethodConfig):
    name: str = "mrpo"
    ctro_eps: float = 0.1  # CTRO clipping band
    eps_split: EpsSplit = EpsSplit.adaptive
    weights: list[float] | None = None  # null = ARWC adaptive weights; else fixed (normalised)
    # official_k2: as the official K=2 code; harmonic: our reading, the only form for K > 2
    # (design, METHODS §4.4); auto (default): official_k2 for K=2, harmonic for K > 2
    weight_assignment: WeightAssignment = WeightAssignment.auto
    references: list[ModelSpec] = field(default_factory=list, metadata=NOT_LOSS)

    def reference_models(self) -> list[ModelSpec]:
        return list(self.references)

    def problems(self) -> list[str]:
        k = 1 + len(self.references)
        if self.weight_assignment == "official_k2" and k != 2:
            return [f"method.weight_assignment=official_k2 is the official code's K=2 form; with "
                    f"K={k} references use method.weight_assignment=harmonic (design)"]  # fmt: skip
        return []


@dataclass
class DPORescaledConfig(MethodConfig):
    """DPO against (1 + eps_y) x the main reference: MRPO's control (losses/rescaled.py)."""

    name: str = "dpo_rescaled"
    ctro_eps: float = 0.1
    eps_split: EpsSplit = EpsSplit.adaptive


@dataclass
class ReferenceStageConfig:
    precompute: bool = True  # false: reference log-probs computed online in every step
    cache_dir: str = "${paths.cache_dir}/reference"
    batch_size: int = 8
    reduce: Reduce = Reduce.sum  # METHODS §1
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
    schedule: Schedule = Schedule.cosine
    max_grad_norm: float = 1.0
    precision: Precision = Precision.auto
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
    backend: EvalBackend = EvalBackend.bapo
    token_budget: int = 2048  # bapo backend: distinct tokens per forward pass
    num_fewshot: int = 0  # MMLU: 0 (default) or 5 from the dev split
    # MMLU-format subjects to score (mmlu: its 57; synthetic_knowledge: attribute x wording)
    mmlu_subjects: list[str] | None = None  # null = all
    mc_format: McFormat = McFormat.auto  # auto: each suite's own (letter for MMLU)
    mmlu_categories: MmluCategories = MmluCategories.lm_eval  # mmlu/<category> groups
    ckpt: str | None = None  # score this checkpoint instead of the run's own
    # also score the model after these training steps (< train.steps): the train stage keeps
    # their weights (checkpoints/at_step_<N>), the eval stage writes eval/at_step/<N>/, so one
    # run traces a curve of retention against personalisation (analysis.load_curves)
    at_steps: list[int] = field(default_factory=list)
    # evaluate eval.at_steps and the final model inside the train stage, on the model in memory
    # (tasks, requests and data prepared once per run; same numbers and files as evaluating the
    # kept checkpoints); false: the eval stage loads each checkpoint (stages/eval_points.py)
    in_training: bool = True
    # held-out pair metrics (personal/pref_acc, margins, drifts, personal/hard_*) also at the
    # eval.at_steps points; false: only at the final model (a curve needs generations, log-odds
    # and the suites at every point; the pairs cost as much again and are read after training)
    curve_pairs: bool = True
    personalisation: bool = True
    gen_prompts: int = 32  # held-out prompts for generated personalisation
    gen_max_new_tokens: int | None = None
    gen_batch_size: int | None = 32  # prompts decoded together; null = sized by gen_token_budget
    gen_token_budget: int = 16384  # gen_batch_size=null: prompts x (prompt + new tokens) per batch
    judge: str | None = None  # conf/model/ name of the judge; null = main reference; "none" = off
    judge_template: str = "{prompt} {instruction}"  # judge's prompt with the instruction (design)
    style_check: str | None = None  # a STYLE_CHECKS name; null = the one of data.name, if any
    significance_z: float = 1.0  # standard errors a rate must clear for a verdict (design)


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none
    project: str = "bapo-exp"
    entity: str | None = None
    mode: LoggerMode = LoggerMode.auto  # auto: online with an API key, else offline
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
    # Replace every extra (MRPO) reference by this conf/model/ name, each with its own init
    # seed (tiny.seed = 1, 2, ...): a CPU smoke of a paper preset needs no hub model
    # (debug=tiny sets tiny). null = the references as configured.
    reference_substitute: str | None = None


# method name -> its schema (conf/method/<file>.yaml extends /schema/method/<name>); a plug-in
# adds a method with register_method_schema (and a LossSpec in bapo_exp.losses.LOSSES).
METHOD_SCHEMAS: Registry[type[MethodConfig]] = Registry("method schema", "method.name")
for _name, _schema in {"none": NoMethodConfig, "dpo": DPOConfig, "ipo": IPOConfig,
                       "bapo": BAPOConfig, "mrpo": MRPOConfig,
                       "dpo_rescaled": DPORescaledConfig}.items():  # fmt: skip
    METHOD_SCHEMAS.register(_name, _schema)
# data source name -> its schema (conf/data/<file>.yaml extends /schema/data/<name>); a plug-in
# adds a source with register_data_schema (and a DatasetSpec in bapo_exp.data.DATASETS).
DATA_SCHEMAS: Registry[type[DataConfig]] = Registry("data schema", "data.name")
for _name, _schema in {"dsp": DSPDataConfig, "psoups": PSoupsDataConfig,
                       "persona_gen": PersonaGenDataConfig}.items():  # fmt: skip
    DATA_SCHEMAS.register(_name, _schema)
# Schemas are stored under schema/<group>/ so that Hydra's option lists and errors show only
# conf/ files; a YAML file extends its schema with `defaults: [/schema/<group>/<name>@_here_]`.
GROUP_SCHEMAS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
                 "eval": EvalConfig, "logger": LoggerConfig, "paths": PathsConfig}  # fmt: skip


# groups whose options each have a schema of their own (a subclass of the group's schema)
VARIANT_SCHEMAS: dict[str, Registry] = {"method": METHOD_SCHEMAS, "data": DATA_SCHEMAS}


def _register_variant(group: str, name: str, schema: type) -> None:
    VARIANT_SCHEMAS[group].register(name, schema, replace=True)
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=schema)


def register_method_schema(name: str, schema: type[MethodConfig]) -> None:
    """Add a method's schema (e.g. from a plug-in) and store it as ``/schema/method/<name>``."""
    _register_variant("method", name, schema)


def register_data_schema(name: str, schema: type[DataConfig]) -> None:
    """Add a data source's schema (e.g. from a plug-in) and store it as ``/schema/data/<name>``."""
    _register_variant("data", name, schema)


def _without_legacy_defaults(data: dict, schema: type[DataConfig]) -> dict:
    """``data`` without the ``LEGACY_DATA_FIELDS`` its source's schema lacks, where they hold
    their old default (a config saved before per-source schemas); other values stay, and the
    merge names them."""
    own = {f.name for f in fields(schema)}
    return {k: v for k, v in data.items()
            if k in own or k not in LEGACY_DATA_FIELDS or v != LEGACY_DATA_FIELDS[k]}  # fmt: skip


def typed_config(container: dict) -> Any:
    """A saved run config (plain dict) checked against the schema, its method's and its data
    source's included.

    Raises:
        omegaconf errors naming the key, e.g. a key this code version no longer knows.
    """
    from omegaconf import OmegaConf

    base = OmegaConf.structured(Config)
    method = (container.get("method") or {}).get("name")
    if method is not None:
        base.method = OmegaConf.structured(METHOD_SCHEMAS.require(method))
    data = container.get("data") or {}
    if (source := data.get("name")) is not None:
        schema = DATA_SCHEMAS.require(source)
        base.data = OmegaConf.structured(schema)
        container = {**container, "data": _without_legacy_defaults(data, schema)}
    return OmegaConf.merge(base, container)


def store_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent): ``base_config``, each group's
    ``schema/<group>/base``, each method's ``schema/method/<name>`` and each data source's
    ``schema/data/<name>``. The entry layer calls it
    with the resolvers and the plug-ins (``bapo_exp.run.register.register_configs``)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=f"schema/{group}", name="base", node=schema)
    for group, registry in VARIANT_SCHEMAS.items():
        for key, schema in registry.items():
            cs.store(group=f"schema/{group}", name=key, node=schema)
