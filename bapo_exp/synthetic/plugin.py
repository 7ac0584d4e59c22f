"""The synthetic world as a plug-in (loaded by ``bapo_exp.plugins``): it registers

- the dataset ``synthetic`` (``data=synthetic``: pairs of the world, split by entity) and its
  schema ``SyntheticDataConfig`` (``data.world``, ``data.include_normal``);
- the model source ``micro`` (``model=micro``: a micro Llama pretrained on the world, cached)
  and its schemas (``model.micro``, ``method.references[i].micro``: ``model_schema``);
- the eval suites ``synthetic_knowledge`` (MMLU format, options scored as text) and
  ``synthetic_alignment`` (HHH format), read from the world folder of the run's data;
- the exact style check ``synthetic`` (``in_style``), used for generated personalisation;
- the answer format ``synthetic`` (``evaluation.answers``: well-formedness, fact correctness,
  style log-odds) and the world's harder held-out pairs (``DatasetSpec.hard``).

Nothing outside ``bapo_exp/synthetic`` imports this package: deleting it leaves every other
module importable and the real-data paths working.
"""

from __future__ import annotations

from pathlib import Path

from bapo_exp.config import register_data_schema, register_model_schema
from bapo_exp.data import DATASETS, DatasetSpec
from bapo_exp.evaluation.personalisation import STYLE_CHECKS
from bapo_exp.evaluation.suites import (
    SUITES,
    SuiteContext,
    SuiteSpec,
    check_hhh_format,
    check_mmlu_format,
    chosen_subjects,
    hhh_format,
    mmlu_format,
)
from bapo_exp.evaluation.tasks import utils as task_utils
from bapo_exp.modeling.sources import MODEL_SOURCES
from bapo_exp.synthetic.builder import (
    SyntheticDataConfig,
    build_synthetic,
    hard_synthetic,
    world_root,
)
from bapo_exp.synthetic.model_schema import MicroModelConfig, MicroSpec
from bapo_exp.synthetic.styles import NEUTRAL, detect_style, in_style, renderings, states_fact
from bapo_exp.synthetic.world import ATTRIBUTES

NAME = "synthetic"


def _micro(cfg: MicroSpec, cache_dir: Path) -> str:
    from bapo_exp.synthetic.pretrain import ensure_micro_from_config

    return str(ensure_micro_from_config(cfg.tiny, cfg.micro, cache_dir / "models"))


def world_of(ctx: SuiteContext, suite: str) -> Path:
    """The world folder a synthetic suite reads: the run's ``data=synthetic`` world, else a data
    root that is a world folder."""
    data = ctx.data
    if data is not None and data.name == NAME:
        return world_root(data.path, data.world, ctx.cache_dir or ".")
    if (ctx.data_root / "world.json").exists():
        return ctx.data_root
    raise FileNotFoundError(
        f"eval suite {suite} reads the synthetic world: run with data=synthetic (or point "
        f"paths.data_root at a world folder; {ctx.data_root} has no world.json)"
    )


def wording(category: str) -> str:
    """A knowledge category -> its summary key: ``world_facts`` -> ``neutral``,
    ``world_facts_poetic`` -> ``poetic`` (``synthetic.evalsets.CATEGORY``)."""
    return category.removeprefix("world_facts").lstrip("_") or "neutral"


def _knowledge(ctx: SuiteContext):
    """The world's knowledge test; ``eval.mmlu_subjects`` may pick subjects (attribute x wording:
    ``world_capitals`` is neutral, ``world_capitals_concise`` the concise wording)."""
    root = world_of(ctx, "synthetic_knowledge")
    subjects = chosen_subjects(root, ctx.mmlu_subjects)
    categories = task_utils.mmlu_categories(root, subjects)
    return mmlu_format(root, "synthetic_knowledge", ctx, categories=categories, plain=True,
                       summary_key=wording)  # fmt: skip


def world_file(name: str, *, _root_) -> str:
    """``${synthetic_file:anchor_prompts.json}``: a file of the run's world (path only)."""
    from omegaconf import OmegaConf

    from bapo_exp.synthetic.export import world_path

    data = _root_.data
    if data.get("path"):
        return str(Path(str(data.path)) / name)
    knobs = OmegaConf.to_container(data.world, resolve=True) if "world" in data else {}
    return str(world_path(knobs, str(_root_.paths.cache_dir)) / name)


NOUNS = {a.key: a.noun for a in ATTRIBUTES}


def _fact(example) -> tuple[str, str, str]:
    """(noun, entity, value) of the fact a synthetic pair's prompt asks for."""
    src = example.source
    return NOUNS[src["attribute"]], src["entity"], src["value"]


def answer_format():
    from bapo_exp.evaluation.answers import AnswerFormat

    return AnswerFormat(
        style=lambda text: detect_style(text, include_neutral=True),
        answers=lambda example, style: renderings(style, *_fact(example)),
        correct=lambda text, example: states_fact(text, *_fact(example)),
        base_style=NEUTRAL,
    )


def register() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("synthetic_file"):
        OmegaConf.register_new_resolver("synthetic_file", world_file)
    from bapo_exp.evaluation.answers import ANSWER_FORMATS

    register_data_schema(NAME, SyntheticDataConfig)
    DATASETS.register(NAME, DatasetSpec(build_synthetic, hard=hard_synthetic))
    register_model_schema("micro", MicroModelConfig, MicroSpec)
    MODEL_SOURCES.register("micro", _micro)
    STYLE_CHECKS.register(NAME, in_style)
    ANSWER_FORMATS.register(NAME, answer_format())
    SUITES.register("synthetic_knowledge", SuiteSpec(
        _knowledge,
        lambda c: check_mmlu_format(world_of(c, "synthetic_knowledge"), c.mmlu_subjects),
        auto_format="options",  # a micro model knows its facts but cannot read letters (#9)
    ))  # fmt: skip
    SUITES.register("synthetic_alignment", SuiteSpec(
        lambda c: hhh_format(world_of(c, "synthetic_alignment"), "synthetic_alignment",
                             plain=True),
        lambda c: check_hhh_format(world_of(c, "synthetic_alignment")),
    ))  # fmt: skip
