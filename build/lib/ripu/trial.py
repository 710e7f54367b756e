"""What identifies a trial: its config hash and the tags reports group trials by.

Torch-free, so the sweep, the report and the trainer share it cheaply.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ripu.config import Config, params_hash
from ripu.environment import environment_tags
from ripu.kinds import get_kind
from ripu.tracking import git_revision

REPO = Path(__file__).resolve().parents[1]


def trial_config_hash(cfg: Config) -> str:
    """Hash of what determines a trial's results: ``cfg`` without where it logs, how it is
    scheduled, what its report looks like, its device and thread count.

    Stored in checkpoints (``config_hash``), LSE round caches, ``results.json``
    (``resume_hash``) and the MLflow tag ``ripu.params_hash``; a trial resumes or is skipped
    only when its hash is unchanged.
    """
    return params_hash(dataclasses.replace(cfg, tracking=type(cfg.tracking)(),
                                           sweep=type(cfg.sweep)(), report=type(cfg.report)(),
                                           train=dataclasses.replace(cfg.train, device="auto",
                                                                     threads=0)))


def trial_tags(cfg: Config) -> dict[str, str]:
    """The tags reports group by: kind, strategy, budget, seed, params hash, git revision,
    and the environment (lock hash, key package versions: :mod:`ripu.environment`).

    Kinds without selection rounds carry their kind as strategy and a zero budget.
    """
    selects = get_kind(cfg.train.kind).selects
    return {
        "ripu.kind": cfg.train.kind,
        "ripu.strategy": cfg.active.strategy if selects else cfg.train.kind,
        "ripu.budget": str(cfg.active.budget if selects else 0.0),
        "ripu.points": str(cfg.active.points if selects else 0),
        "ripu.seed": str(cfg.seed),
        "ripu.params_hash": trial_config_hash(cfg),
        "ripu.git_revision": os.environ.get("RIPU_GIT_REVISION") or git_revision(REPO),
        **environment_tags(),
    }
