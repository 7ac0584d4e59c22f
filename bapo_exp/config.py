"""Typed config schemas, registered in Hydra's ConfigStore as ``base_*``.

YAML files under ``conf/`` hold values and start with ``defaults: [base_xxx]``; these
dataclasses hold the schema, so a misspelt key or a wrong type fails at composition.
Stage functions receive these dataclasses (``OmegaConf.to_object``), never ``DictConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bapo_exp.choices import (
    AnchorPrompts,
    AnchorType,
    Dtype,
    EmptyResponses,
    EpsSplit,
    EvalBackend,
    Finetune,
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
class ModelSpec:
    """What loads a model and scores text with it: the policy's base and every reference. A
    source's own settings live in its schemas (``MODEL_SCHEMAS``, ``SPEC_SCHEMAS``), e.g. the
    synthetic plug-in's ``micro`` (``bapo_exp/synthetic/model_schema.py``)."""

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


@dataclass
class ModelConfig(ModelSpec):
    """The policy: a ``ModelSpec`` plus how it is fine-tuned."""

    gradient_checkpointing: bool = False
    finetune: Finetune = Finetune.lora
    lora: LoraConfig = field(default_factory=LoraConfig)
    # torch intra-op threads of a run with this model, set once by the entrypoint (null = torch's
    # default); micro models run faster on 1, 2 threads on a busy 2-core CPU were 20x slower
    threads: int | None = None


# The micro source's settings every model spec (the policy and each reference) held before
# per-source model schemas (until 27355fe), at their defaults then (the enum by its name, as the
# identity hashed it). A spec whose source's schema lacks them is read as if it held these
# (bapo_exp.run.identity: finished cells keep their identity), and a saved config that holds
# them at these values loads (typed_config). A saved value other than these is an error.
LEGACY_MODEL_FIELDS: dict[str, Any] = {
    "micro": {"world": {}, "style_exposure": None, "steps": 800, "seed": 0, "lr": 0.003,
              "batch_size": 32, "kernels": "portable"},
}  # fmt: skip


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
    # model specs, each checked against its source's schema (model_spec): untyped here, as a
    # typed list holds one schema, and a micro reference has settings the core spec lacks
    references: list[Any] = field(default_factory=list, metadata=NOT_LOSS)

    def reference_models(self) -> list[ModelSpec]:
        return [model_spec(r, f"{REFERENCES}[{i}]") for i, r in enumerate(self.references)]

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
# model source -> its policy schema (conf/model/<file>.yaml extends /schema/model/<source>) and
# the schema of a reference of that source (an entry of method.references); a plug-in adds them
# with register_model_schema. A source without its own (hf, tiny, gguf) uses ModelConfig/ModelSpec.
MODEL_SCHEMAS: Registry[type[ModelConfig]] = Registry("model schema", "model.source")
SPEC_SCHEMAS: Registry[type[ModelSpec]] = Registry(
    "model spec schema", "method.references[i].source"
)
REFERENCES = "method.references"  # the config's list of model specs (typed by model_spec)
# Schemas are stored under schema/<group>/ so that Hydra's option lists and errors show only
# conf/ files; a YAML file extends its schema with `defaults: [/schema/<group>/<name>@_here_]`.
GROUP_SCHEMAS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
                 "eval": EvalConfig, "logger": LoggerConfig, "paths": PathsConfig}  # fmt: skip


# groups whose options each have a schema of their own (a subclass of the group's schema)
VARIANT_SCHEMAS: dict[str, Registry] = {"method": METHOD_SCHEMAS, "data": DATA_SCHEMAS,
                                        "model": MODEL_SCHEMAS}  # fmt: skip


def _register_variant(group: str, name: str, schema: type) -> None:
    VARIANT_SCHEMAS[group].register(name, schema, replace=True)
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=schema)


def register_method_schema(name: str, schema: type[MethodConfig]) -> None:
    """Add a method's schema (e.g. from a plug-in) and store it as ``/schema/method/<name>``."""
    _register_variant("method", name, schema)


def register_data_schema(name: str, schema: type[DataConfig]) -> None:
    """Add a data source's schema (e.g. from a plug-in) and store it as ``/schema/data/<name>``."""
    _register_variant("data", name, schema)


def register_model_schema(source: str, schema: type[ModelConfig], spec: type[ModelSpec]) -> None:
    """Add a model source's schemas (e.g. from a plug-in): ``schema`` for the policy, stored as
    ``/schema/model/<source>``, and ``spec`` for a reference of that source."""
    _register_variant("model", source, schema)
    SPEC_SCHEMAS.register(source, spec, replace=True)


def model_schema(source: Any) -> type[ModelConfig]:
    """The policy schema of model ``source`` (``ModelConfig`` unless it registered one)."""
    return MODEL_SCHEMAS.get(str(source)) or ModelConfig


def spec_schema(source: Any) -> type[ModelSpec]:
    """The reference schema of model ``source`` (``ModelSpec`` unless it registered one)."""
    return SPEC_SCHEMAS.get(str(source)) or ModelSpec


def _without_legacy(node: dict, schema: type, legacy: dict[str, Any]) -> dict:
    """``node`` without the ``legacy`` fields ``schema`` lacks, where they hold their old
    default (a config saved before per-source schemas); other values stay, and the merge names
    them."""
    own = {f.name for f in fields(schema)}
    return {k: v for k, v in node.items()
            if k in own or k not in legacy or v != legacy[k]}  # fmt: skip


@contextmanager
def _naming(key: str, source: Any) -> Iterator[None]:
    """omegaconf's errors in model spec ``key`` of ``source`` as a one-line ``ConfigError``
    naming the key."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except OmegaConfBaseException as err:
        where = f"{key}.{err.full_key}" if getattr(err, "full_key", None) else key
        first = str(err.msg or err).splitlines()[0]
        raise ConfigError(f"{where}: {first} (the model schema of source {source!r})") from None


def _typed_spec(node: Any, key: str, convert: Callable[[Any], Any]) -> Any:
    """``convert`` of ``node`` merged into its source's reference schema (defaults filled in)."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"{key}: a model spec is a mapping (name, source, ...), not {node!r}")
    source = node.get("source", ModelSpec.source)
    schema = spec_schema(source)
    with _naming(key, source):
        plain = _without_legacy(dict(node), schema, LEGACY_MODEL_FIELDS)
        return convert(OmegaConf.merge(OmegaConf.structured(schema), plain))


def model_spec(node: Any, key: str) -> ModelSpec:
    """A model spec of the config (``key``, e.g. ``method.references[0]``: a mapping) typed by
    its source's schema: defaults filled in; an unknown key, a wrong type or a missing value is
    a ``ConfigError`` naming it (``method.references[0].tiny.sed: Key 'sed' not in ...``)."""
    if isinstance(node, ModelSpec):
        return node
    return _typed_spec(node, key, OmegaConf.to_object)


def spec_container(node: Any, key: str) -> dict[str, Any]:
    """``model_spec`` as plain data, resolved, enums as their names (what an identity hashes)."""
    return _typed_spec(node, key, lambda typed: OmegaConf.to_container(
        typed, resolve=True, enum_to_str=True))  # fmt: skip


def _schema_of(group: str, node: dict) -> type | None:
    """The schema of a saved config's ``group`` node: its method's, data source's or model
    source's (None: the node names none)."""
    if group == "model":
        return model_schema(node.get("source", ModelSpec.source)) if node else None
    name = node.get("name")
    return None if name is None else VARIANT_SCHEMAS[group].require(name)


LEGACY_FIELDS = {"data": LEGACY_DATA_FIELDS, "model": LEGACY_MODEL_FIELDS}


def _old_references(method: dict) -> dict:
    """``method`` with each reference's ``LEGACY_MODEL_FIELDS`` dropped where they hold their old
    default (the references are typed where they are read: ``model_spec``)."""
    refs = method.get("references")
    if not isinstance(refs, list):
        return method
    return {**method, "references": [
        _without_legacy(r, spec_schema(r.get("source", ModelSpec.source)), LEGACY_MODEL_FIELDS)
        if isinstance(r, dict) else r for r in refs]}  # fmt: skip


def typed_config(container: dict) -> Any:
    """A saved run config (plain dict) checked against the schema, its method's, its data
    source's and its model source's included; fields a config saved before per-source schemas
    holds at their old defaults (``LEGACY_*``) are dropped.

    Raises:
        omegaconf errors naming the key, e.g. a key this code version no longer knows.
    """
    base = OmegaConf.structured(Config)
    out = dict(container)
    for group in ("method", "data", "model"):
        node = container.get(group) or {}
        if (schema := _schema_of(group, node)) is not None:
            setattr(base, group, OmegaConf.structured(schema))
            out[group] = _without_legacy(node, schema, LEGACY_FIELDS.get(group, {}))
    if isinstance(out.get("method"), dict):
        out["method"] = _old_references(out["method"])
    return OmegaConf.merge(base, out)


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
