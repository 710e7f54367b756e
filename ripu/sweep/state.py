"""Where a trial stands: its folder and its MLflow run decide what a sweep does with it.

A trial's completion is one commit in two writes, in this order:

1. ``results.json`` in the trial folder (atomic; it carries the config's ``resume_hash``),
   written right after the final checkpoint;
2. its MLflow run: the final metrics and artifacts, then status FINISHED, last.

A trial is *done* only when both hold (:func:`committed`). An interruption between the two
leaves a trial that the next sweep runs again: it resumes from its final checkpoint, so it
only evaluates again (same metrics: evaluation is deterministic) and writes both again.

The trial-folder paths are spelled here and nowhere else in ``ripu.sweep``.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import torch

from ripu.config import Config, load_config
from ripu.engine.callbacks import RUN_ID_FILE
from ripu.engine.trainer import resume_hash
from ripu.errors import RipuError

RESULTS = "results.json"
CONFIG = "config.yaml"
CHECKPOINT = Path("checkpoints") / "last.pt"


class Plan(enum.Enum):
    """What a sweep does with a trial."""

    DONE = "finished earlier"  # results.json and a FINISHED run with its final metrics
    COMMIT = "to commit"  # results.json, but its run is not FINISHED: evaluate again
    RESUME = "to resume"  # a checkpoint of this config: continue from it
    START = "to start"  # nothing usable: start afresh


def finished_results(out: Path, cfg: Config) -> dict[str, Any] | None:
    """The stored results of a trial folder when they were produced by this exact config."""
    try:
        results = json.loads((Path(out) / RESULTS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("resume_hash") != resume_hash(cfg):
        return None
    return results


def can_resume(out: Path, cfg: Config) -> bool:
    """True when ``out`` holds a checkpoint written with this config (resume from it)."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return False
    try:  # mmap: only the small header entries are actually read
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file: start afresh
        return False
    return isinstance(ckpt, dict) and ckpt.get("config_hash") == resume_hash(cfg)


def same_config(out: Path, cfg: Config) -> bool:
    """True when ``out``/config.yaml (written as each attempt starts) is this config's."""
    try:
        return resume_hash(load_config(Path(out) / CONFIG)) == resume_hash(cfg)
    except RipuError:
        return False


def has_config(out: Path) -> bool:
    """Whether an attempt has started in ``out`` (it writes config.yaml first)."""
    return (Path(out) / CONFIG).is_file()


def run_id_file(out: Path) -> Path:
    """The file holding the id of the trial's MLflow run."""
    return Path(out) / RUN_ID_FILE


def stored_run_id(out: Path) -> str | None:
    """The MLflow run id recorded in the trial folder, if any."""
    path = run_id_file(out)
    return path.read_text().strip() or None if path.is_file() else None


def committed(results: dict[str, Any], run: Any | None) -> bool:
    """Whether ``run`` (an MLflow run or None) is the FINISHED run of these results: the
    second half of the completion commit."""
    if run is None or run.info.status != "FINISHED":
        return False
    logged = run.data.metrics.get("final/miou")
    return logged is not None and math.isclose(logged, float(results["miou"]),
                                               rel_tol=0.0, abs_tol=1e-12)


def plan(out: Path, cfg: Config, run: Any | None) -> Plan:
    """What to do with the trial in ``out`` of config ``cfg``, whose stored run id names
    ``run`` (None: no run, or no such run in the store)."""
    results = finished_results(out, cfg)
    if results is not None:
        return Plan.DONE if committed(results, run) else Plan.COMMIT
    return Plan.RESUME if can_resume(out, cfg) else Plan.START


def final_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The metrics a finished trial reports to Ray Tune, from its results.json."""
    out = {f"final/{k}": v for k, v in results.items()
           if k.startswith("miou") or k in ("labelled_fraction", "seconds")}
    out.update({f"val/{k}": v for k, v in results.items() if k.startswith("miou")})
    out["iteration"] = results.get("iterations", 0)
    return out
