"""What the command line knows of ``conf/`` and the schema: each group's options
(``group_options``), every dotted key (``schema_keys``), and ``bapo-exp --help`` (``usage``):
every config group with its default and each option's description (the first comment line of
its file), and every key with its default value (the composed ``conf/config.yaml``). The methods
listed are the ones "choose a method" names (``method_options``)."""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from typing import Any

from bapo_exp.config import CONF_DIR, REFERENCES, SPEC_SCHEMAS, VARIANT_SCHEMAS, Config, ModelSpec

NOT_GROUPS = ("accelerate", "hydra", "local")  # conf/ folders that are not config groups
WIDTH = 100


def group_options(group: str) -> list[str]:
    """The options of a config group: ``conf/<group>/*.yaml`` and those plug-ins stored in
    Hydra's ConfigStore (the ``schema/`` group holds schemas, not options)."""
    from hydra.core.config_store import ConfigStore

    folder = CONF_DIR / group
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    node = ConfigStore.instance().repo
    for part in group.split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    names |= {k.removesuffix(".yaml") for k, v in node.items() if k.endswith(".yaml")}
    return sorted(names)


def _fields(schema: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def schema_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of ``schema`` (methods, data and models: the union of every method's,
    data source's and model source's fields; ``method.references``: of every model source's
    spec)."""
    keys = []
    for name, hint in _fields(schema).items():
        key = f"{prefix}{name}"
        keys.append(key)
        nested = [t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t)]
        if key in VARIANT_SCHEMAS:
            nested += list(VARIANT_SCHEMAS[key].values())
        if key == REFERENCES:  # model specs, each of its source's schema (config.model_spec)
            nested = [ModelSpec, *SPEC_SCHEMAS.values()]
        for t in nested:
            keys += schema_keys(t, key + ".")
    return sorted(set(keys))


def method_options() -> list[str]:
    """The ``method=`` options (conf/method and plug-ins): what --help and the error list."""
    return group_options("method")


def description(group: str, option: str) -> str:
    """The first comment line of ``conf/<group>/<option>.yaml`` (a plug-in's option: empty)."""
    path = CONF_DIR / group / f"{option}.yaml"
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("#").strip().rstrip(":,")
        if line.strip() and not line.startswith("#"):
            break
    return ""


def group_defaults() -> dict[str, Any]:
    """``group -> default option`` from the primary config's defaults list (None: required)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    return {k.removeprefix("optional "): v for entry in raw.get("defaults", [])
            if isinstance(entry, dict) for k, v in entry.items()}  # fmt: skip


def _group_lines(group: str, default: Any) -> list[str]:
    head = "required, no default" if group == "method" else f"default: {default or 'none'}"
    lines = [f"  {group} ({head})"]
    options = group_options(group)
    width = max(len(o) for o in options) + 2
    for option in options:
        text = f"    {option:<{width}}{description(group, option)}"
        lines.append(text if len(text) <= WIDTH else text[: WIDTH - 3] + "...")
    return lines


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{...}" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _composed() -> dict[str, Any]:
    """The primary config with every default and no method (what an override changes)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
    return OmegaConf.to_container(cfg, resolve=False)


def _key_lines(composed: dict[str, Any]) -> list[str]:
    lines = []
    keys = schema_keys()
    for top in sorted({k.split(".")[0] for k in keys}):
        node = composed.get(top)
        if top == "method":
            names = sorted({k.split(".")[1] for k in keys if k.count(".") >= 1
                            and k.startswith("method.")})  # fmt: skip
            items = [f"(the chosen method's: {', '.join(names)})"]
        elif isinstance(node, dict):
            items = [f"{k}={_value(v)}" for k, v in node.items()]
        else:
            items = [f"(a value, default {_value(node)})"]
        lines += textwrap.wrap(", ".join(items), width=WIDTH - 2, initial_indent=f"  {top:<12} ",
                               subsequent_indent=" " * 15, break_long_words=False)  # fmt: skip
    return lines


def usage(doc: str) -> str:
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in NOT_GROUPS)
    defaults = group_defaults()
    lines = [doc.strip(), "", "Config groups (group=option; each option with its file's first "
             "line):"]  # fmt: skip
    for group in groups:
        lines += _group_lines(group, defaults.get(group))
    lines += ["", "Keys (key=value, with the default; conf/ and bapo_exp/config.py say what each "
              "does):"]  # fmt: skip
    lines += _key_lines(_composed())
    lines += ["", "Launchers: hydra/launcher=local_joblib|local_submitit|slurm (default: "
              "basic, sequential)", "Hydra's own help: bapo-exp --hydra-help"]  # fmt: skip
    return "\n".join(lines) + "\n"
