"""Shared fixtures: a tiny synthetic source/target set on disk in the real layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
TINY = {"source_images": 6, "target_train": 6, "target_val": 3, "height": 32, "width": 64}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A tiny synthetic benchmark: <root>/source (GTA5 layout), <root>/target (Cityscapes)."""
    from ripu.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    generate(root, seed=0, progress=False, **TINY)
    return root


def tiny_config(data_root: Path, tmp_path: Path, **overrides):
    """A Config that trains the small network for a few iterations on ``data_root``."""
    from ripu.config import Config, apply_overrides

    base = {
        "data.source_root": str(data_root / "source"),
        "data.target_root": str(data_root / "target"),
        "data.source_size": [64, 32], "data.target_size": [64, 32], "data.eval_size": [64, 32],
        "model.arch": "small", "model.freeze_bn": False,
        "optim.lr": 0.01, "optim.iters": 8, "optim.poly_iters": 8,
        "optim.batch_source": 2, "optim.batch_target": 2,
        "active.round_at": [0.0, 0.5], "active.rounds": 2, "active.budget": 0.05,
        "active.points": 4, "active.radius": 1, "active.batch_size": 4,
        "train.checkpoint_every": 4, "train.log_every": 2, "train.threads": 1,
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking.experiment": "test",
        "lse.rounds": 2, "lse.rule": "per_class",
    }
    base.update(overrides)
    return apply_overrides(Config(), base)
