"""Where a trial stands: its folder and its MLflow run decide what a sweep does with it.

A trial's completion is one commit in two writes, in this order:

1. ``results.json`` in the trial folder (atomic; it carries the config's ``resume_hash``),
   written right after the final checkpoint;
2. its MLflow run: the final metrics and artifacts, then status FINISHED, last.

A trial is *done* only when both hold (:func:`committed`) and its files come from the start
it has now (the hash of its initial weights, :mod:`ripu.starts`): after a warm-up is
rebuilt, the trials that start from it run again from scratch, in new MLflow runs. An
interruption between the two writes leaves a trial that the next sweep runs again: it
resumes from its final checkpoint, so it only evaluates again (same metrics: evaluation is
deterministic) and writes both again.

The trial folder's paths and checks are :class:`ripu.engine.trial_dir.TrialDir`'s.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any

from ripu.config import Config
from ripu.engine.trial_dir import TrialDir
from ripu.record_names import FINAL_MIOU, ITERATION, MIOU, START_SHA256_TAG, VAL
from ripu.trial import final_summary, miou_metrics


class Plan(enum.Enum):
    """What a sweep does with a trial."""

    DONE = "finished earlier"  # results.json and a FINISHED run with its final metrics
    COMMIT = "to commit"  # results.json, but its run is not FINISHED: evaluate again
    RESUME = "to resume"  # a checkpoint of this config and start: continue from it
    RERUN = "to rerun from a changed start"  # files of this config, from another start
    START = "to start"  # nothing usable: start afresh


def committed(results: dict[str, Any], run: Any | None) -> bool:
    """Whether ``run`` (an MLflow run or None) is the FINISHED run of these results: the
    second half of the completion commit."""
    if run is None or run.info.status != "FINISHED":
        return False
    logged = run.data.metrics.get(FINAL_MIOU)
    return logged is not None and math.isclose(logged, float(results[MIOU]),
                                               rel_tol=0.0, abs_tol=1e-12)


def plan(out: Path, cfg: Config, start: str | None, run: Any | None) -> Plan:
    """What to do with the trial in ``out`` of config ``cfg`` starting from the weights whose
    file hash is ``start`` (:mod:`ripu.starts`), whose stored run id names ``run`` (None: no
    run, or no such run in the store). Files of another start are never reused."""
    trial = TrialDir(out)
    results = trial.finished_results(cfg, start)
    if results is not None:
        return Plan.DONE if committed(results, run) else Plan.COMMIT
    if trial.can_resume(cfg, start):
        return Plan.RESUME
    return Plan.RERUN if trial.start_changed(cfg, start) else Plan.START


def same_start(run: Any | None, start: str | None) -> bool:
    """Whether ``run`` (an MLflow run or None) was logged from the start ``start``: a trial
    rerun from another start gets a new run (its tag ``ripu.start_sha256``)."""
    return run is None or run.data.tags.get(START_SHA256_TAG, "") == (start or "")


def final_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The metrics a finished trial reports to Ray Tune, from its results.json."""
    return {**final_summary(results), **{VAL + k: v for k, v in miou_metrics(results).items()},
            ITERATION: results.get("iterations", 0)}
