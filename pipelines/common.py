"""What every stage shares: the repository root, params.yaml, absolute paths, error handling.

Only ``pipelines/`` and ``ripu/cli.py`` know the repository's folder names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ripu.config import Config, apply_overrides, load_config
from ripu.errors import RipuError, exit_status
from ripu.tracking import absolute_uri, git_revision

PARAMS = "params.yaml"
WARMUP_MODEL = Path("models/warmup.pt")
WARMUP_METRICS = Path("metrics/warmup.json")
WARMUP_TRIAL = Path("models/warmup_trial")  # resumable working folder of the warm-up
RUNS = Path("runs")
RAY_RESULTS = Path("ray_results")  # Ray Tune's own files (git- and dvc-ignored)


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding params.yaml and
    dvc.yaml; DVC runs stages there."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS).is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise RipuError(f"{here}: no {PARAMS} with a dvc.yaml here or above, expected to run "
                    f"inside the repository")


def resolve(root: Path, path: str) -> str:
    """``path`` made absolute against ``root`` (absolute paths stay as they are)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def load_params(root: Path) -> Config:
    """params.yaml with its relative paths resolved against ``root``.

    Ray trials run in other folders, so data roots, the synthetic output, the pretrained
    weights, the experiment file, the report folder and a SQLite tracking store become
    absolute. Also records the repository's git revision for every run (RIPU_GIT_REVISION).
    """
    cfg = load_config(root / PARAMS)
    paths = {"synth.out": cfg.synth.out, "data.source_root": cfg.data.source_root,
             "data.target_root": cfg.data.target_root, "sweep.experiment": cfg.sweep.experiment,
             "report.out": cfg.report.out}
    if cfg.model.pretrained:
        paths["model.pretrained"] = cfg.model.pretrained
    overrides = {key: resolve(root, value) for key, value in paths.items()}
    overrides["tracking.uri"] = absolute_uri(cfg.tracking.uri, root)
    os.environ.setdefault("RIPU_GIT_REVISION", git_revision(root))
    return apply_overrides(cfg, overrides)


def show_progress() -> bool:
    """Progress bars only on an interactive terminal (not in DVC logs)."""
    return sys.stderr.isatty()


def _run(stage: Callable[[Path, Config], None]) -> None:
    root = repo_root()
    os.chdir(root)
    stage(root, load_params(root))


def main(stage: Callable[[Path, Config], None]) -> None:
    """Run ``stage(root, cfg)`` from the repository root; a RipuError becomes one stderr line
    and exit status 2 (:func:`ripu.errors.exit_status`)."""
    status = exit_status(_run, stage)
    if status:
        sys.exit(status)
