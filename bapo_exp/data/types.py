"""The one example type every dataset builder returns (text only; tokenisation comes later)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PreferenceExample:
    """One preference pair for one user/preference.

    Attributes:
        id: stable identifier derived from the source (e.g. ``dsp/academy/q00012/business``);
            used in error messages, caches and logs.
        prompt: the user's request, without any persona/preference instruction unless the
            data config keeps it.
        chosen: the response this preference prefers (y_w).
        rejected: the dispreferred response (y_l).
        preference: the preference/user id (DSP domain, persona id such as ``P1A``, style).
        source: provenance (dataset name, query index, rejected domain, file), for reports.
    """

    id: str
    prompt: str
    chosen: str
    rejected: str
    preference: str
    source: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class PreferenceData:
    """What a dataset builder returns: train and held-out pairs, split by prompt."""

    train: list[PreferenceExample]
    heldout: list[PreferenceExample]
    report: dict = field(default_factory=dict)  # counts, duplicates, split notes (-> run dir)
