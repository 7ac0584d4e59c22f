"""Hydra's basic sweeper, checking every cell of the grid before any cell starts.

A misspelt value in a grid (``data.preferences=[academy],[astrology]``) used to surface only when
its cells ran, after the others had, or on Slurm after submission. Here, in the launching
process and before anything is launched or submitted, each cell's config is composed and
checked as its job will check it (``bapo_exp.run.launch.typed_checked``); any failure stops the
multirun with one line naming each error and the cells it hits. Two passes keep a typo fast:
first every cell's inputs (data, prompt and eval files: each distinct set read once), which
needs no torch, then every cell's settings (the method registry imports torch). Cells that
differ only in plain ``key=value`` overrides share one composition of their config groups, the
values applied on a copy (what Hydra's composition does last). The window check of the eval
suites needs each model's tokenizer and runs in the job. ``hydra.sweeper.check_cells=false``
launches without these checks (each job still checks itself).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class CheckedSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        check_cells: bool = True,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.check_cells = check_cells
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def sweep(self, arguments: list[str]) -> Any:
        if self.check_cells:
            batches = self.split_arguments(
                self._parser().parse_overrides([*self._parse_config(), *arguments]), None
            )
            self.check([list(cell) for batch in batches for cell in batch])
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if not self.check_cells:  # otherwise every cell was composed and checked in ``check``
            super().validate_batch_is_legal(batch)

    def _parser(self) -> OverridesParser:
        assert self.hydra_context is not None
        return OverridesParser.create(config_loader=self.hydra_context.config_loader)

    def check(self, cells: list[list[str]]) -> None:
        """Compose and check every cell; ``SystemExit`` with one line if any fails."""
        from bapo_exp.run.launch import typed
        from bapo_exp.run.validate import check_settings, input_checks

        start = time.perf_counter()
        ours = logging.getLogger("bapo_exp")
        level = ours.level
        ours.setLevel(logging.WARNING)  # the checks' detail lines belong to the jobs' logs
        try:
            errors: dict[int, str] = {}
            typed_cells = {}
            for i, overrides in enumerate(cells):
                cfg, errors[i] = _outcome(lambda o=overrides: typed(self._compose(o)))
                if cfg is not None:
                    typed_cells[i] = cfg
            seen: dict[str, str | None] = {}  # each distinct input is read once
            for i, cfg in typed_cells.items():  # inputs first: no torch
                for key, run_check in input_checks(cfg):
                    if key not in seen:
                        seen[key] = _outcome(run_check)[1]
                    errors[i] = seen[key]
                    if errors[i]:
                        break
            if not any(errors.values()):
                for i, cfg in typed_cells.items():
                    errors[i] = _outcome(lambda cfg=cfg: check_settings(cfg))[1]
        finally:
            ours.setLevel(level)
        log.debug("checked %d cells in %.2f s", len(cells), time.perf_counter() - start)
        if failed := {i: e for i, e in errors.items() if e}:
            raise SystemExit(failure_line(failed, cells))

    def _compose(self, overrides: list[str]) -> DictConfig:
        """The cell's task config: its config groups composed once per distinct choice, its
        plain ``key=value`` overrides applied to a copy."""
        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        parsed = self._parser().parse_overrides(overrides)
        groups = tuple(o.input_line for o in parsed if _is_group(loader, o))
        if groups not in self._composed:
            cfg = loader.load_sweep_config(self.config, list(groups))
            with open_dict(cfg):
                del cfg["hydra"]
            self._composed[groups] = cfg
        cfg = copy.deepcopy(self._composed[groups])
        values = [o for o in parsed if not _is_group(loader, o) and not o.key_or_group.startswith(
            "hydra")]  # fmt: skip
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg


def _outcome(check) -> tuple[Any, str | None]:
    """``(check(), None)``, or ``(None, the error its job would stop on, as text)``."""
    from bapo_exp.data.validation import DataError
    from bapo_exp.run.validate import ConfigError

    try:
        return check(), None
    except (ConfigError, DataError) as err:  # what the job reports as a user error
        return None, str(err)
    except Exception as err:  # anything else the job would stop on: name its type
        return None, f"{type(err).__name__}: {err}"


def _is_group(loader: Any, override: Any) -> bool:
    """A config-group choice (``method=dpo``, ``+debug=tiny``, ``hydra/launcher=...``) or a
    deletion: these change the composition itself, not a value in it."""
    key = override.key_or_group
    return override.is_delete() or "/" in key or loader.repository.group_exists(key)


def failure_line(errors: dict[int, str], cells: list[list[str]]) -> str:
    """One line: how many cells fail, then each error with the cells (folder names) it hits."""
    from bapo_exp.run.identity import readable_name

    by_error: dict[str, list[str]] = {}
    for i in sorted(errors):
        by_error.setdefault(errors[i], []).append(readable_name(cells[i]))
    parts = [f"{error} (cells: {'; '.join(names)})" for error, names in by_error.items()]
    return (f"bapo-exp: error: {len(errors)} of {len(cells)} cells fail their checks, nothing "
            f"was launched: {' | '.join(parts)}")  # fmt: skip
