"""The parts trial kinds are composed of (:mod:`ripu.kinds` names them): schedules and
target-label sources, each registered by location (:mod:`ripu.registry`) and imported when a
trial first uses it. The engine runs a kind's parts through :func:`run_schedule` and
:func:`label_source` without importing LSE or people-labelling code."""

from __future__ import annotations

from typing import Any

from ripu.kinds import KINDS, TrialKind
from ripu.registry import Registry

# How a kind's training is scheduled: objects with ``run(trainer)``.
SCHEDULES: Registry[Any] = Registry("schedule", {
    "iterations": "ripu.schedules:ITERATIONS",
    "selection_rounds": "ripu.schedules:SELECTION_ROUNDS",
    "lse_rounds": "ripu.selftrain.train:LSE_ROUNDS",
})
# Where a kind's target supervision comes from: label-source classes (one object a trial).
LABEL_SOURCES: Registry[Any] = Registry("target-label source", {
    "none": "ripu.label_sources:LabelSource",
    "all": "ripu.label_sources:LabelSource",
    "selected": "ripu.label_sources:Selected",
    "selected+pseudo": "ripu.label_sources:SelectedAndPseudo",
    "pseudo": "ripu.label_sources:LabelSource",  # LSE's rounds give their patches' labels
})


def run_schedule(kind: TrialKind, trainer: Any) -> None:
    """Train ``trainer`` by ``kind``'s schedule."""
    SCHEDULES[kind.schedule].run(trainer)


def label_source(kind: TrialKind, cfg: Any, trial_dir: Any) -> Any:
    """A new instance of ``kind``'s target-label source for one trial."""
    return LABEL_SOURCES[kind.target_labels](cfg, trial_dir)


def unregistered() -> list[str]:
    """``kind: part`` for each part a registered kind names that no registry holds."""
    return [f"{k.name}: {part}" for k in KINDS.values()
            for part, registry in ((k.schedule, SCHEDULES), (k.target_labels, LABEL_SOURCES))
            if part not in registry]
