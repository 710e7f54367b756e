"""What identifies a trial and what it records: its config hash, the tags reports group
trials by, its selection fields (zero budget for kinds that do not select), its mIoU metrics
and the git revision.

Torch-free, so the sweep, the report and the trainer share it cheaply.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ripu.config import Config, params_hash
from ripu.environment import environment_tags, git_revision
from ripu.kinds import get_kind
from ripu.record_names import (
    BUDGET_TAG,
    FINAL,
    GIT_REVISION_TAG,
    KIND_TAG,
    MIOU,
    PARAMS_HASH_TAG,
    POINTS_TAG,
    SEED_TAG,
    STRATEGY_TAG,
)

REPO = Path(__file__).resolve().parents[1]


# What does not decide a trial's results: where it logs, how it is scheduled, what its
# report looks like, its device and thread count.
NOT_IDENTITY = ("tracking", "sweep", "report", "train.device", "train.threads")


def is_identity_key(key: str) -> bool:
    """Whether the config key ``key`` (``section.name``) decides a trial's results."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_IDENTITY)


def trial_identity(cfg: Config) -> Config:
    """``cfg`` with every key of :data:`NOT_IDENTITY` at its default."""
    default = type(cfg)()
    sections = {k: getattr(default, k) for k in NOT_IDENTITY if "." not in k}
    train = {k.split(".")[1]: getattr(default.train, k.split(".")[1])
             for k in NOT_IDENTITY if k.startswith("train.")}
    return dataclasses.replace(cfg, **sections, train=dataclasses.replace(cfg.train, **train))


def trial_config_hash(cfg: Config) -> str:
    """Hash of what determines a trial's results (:func:`trial_identity`).

    Stored in checkpoints (``config_hash``), LSE round caches, ``results.json``
    (``resume_hash``) and the MLflow tag ``ripu.params_hash``; a trial resumes or is skipped
    only when its hash is unchanged.
    """
    return params_hash(trial_identity(cfg))


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a trial records of its selection: its strategy (None for a kind that does not
    select), budget and points (0 for such a kind)."""

    strategy: str | None
    budget: float
    points: int


def selection(cfg: Config) -> Selection:
    """The budget-0 rule: a kind without selection rounds labels nothing by selection."""
    if get_kind(cfg.train.kind).selects:
        return Selection(cfg.active.strategy, cfg.active.budget, cfg.active.points)
    return Selection(None, 0.0, 0)


def miou_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The mIoU values of an evaluation summary or results (``miou``, ``miou13``)."""
    return {k: float(v) for k, v in summary.items()
            if k.startswith(MIOU) and isinstance(v, float)}


def final_summary(results: Mapping[str, Any]) -> dict[str, float]:
    """A finished trial's headline metrics from its results: ``final/miou`` (and
    ``final/miou13``), ``final/labelled_fraction``, ``final/seconds``: what its MLflow run
    logs and what it reports to Ray Tune."""
    values = {**miou_metrics(results), **{k: results[k] for k in ("labelled_fraction", "seconds")
                                         if k in results}}
    return {FINAL + k: v for k, v in values.items()}


def revision() -> str:
    """The git revision runs are tagged with: RIPU_GIT_REVISION, else this checkout's."""
    return os.environ.get("RIPU_GIT_REVISION") or git_revision(REPO)


def trial_tags(cfg: Config) -> dict[str, str]:
    """The tags reports group by: kind, strategy, budget, seed, params hash, git revision,
    and the environment (lock hash, key package versions: :mod:`ripu.environment`).

    Kinds without selection rounds carry their kind as strategy and a zero budget.
    """
    s = selection(cfg)
    return {
        KIND_TAG: cfg.train.kind,
        STRATEGY_TAG: s.strategy or cfg.train.kind,
        BUDGET_TAG: str(s.budget),
        POINTS_TAG: str(s.points),
        SEED_TAG: str(cfg.seed),
        PARAMS_HASH_TAG: trial_config_hash(cfg),
        GIT_REVISION_TAG: revision(),
        **environment_tags(),
    }
