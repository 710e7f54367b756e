"""The sweep's MLflow parent run, and the trial runs the driver closes itself.

One parent run per trial-folder root, kept across resumed sweeps (its id is stored in
``<root>/sweep_run_id.txt``); tags ``ripu.sweep``, ``ripu.experiment``, ``ripu.git_revision``
and the environment's (:mod:`ripu.environment`); artifacts ``environment/pip-freeze.txt``,
``trials.json`` = {trial: ripu.params_hash}, the experiment file, and the sweep's
counts as ``sweep/<status>`` metrics. Its status FINISHED commits the sweep: the report reads
the newest FINISHED parent.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ripu.environment import environment_tags, pip_freeze
from ripu.experiments import Experiment
from ripu.io import write_text
from ripu.record_names import EXPERIMENT_TAG, GIT_REVISION_TAG, SWEEP_TAG
from ripu.tracking import Tracker, experiment_id, list_runs
from ripu.trial import revision, trial_config_hash

PARENT_ID_FILE = "sweep_run_id.txt"
FREEZE_ARTIFACT = "environment/pip-freeze.txt"  # the driver's installed packages


def runs_by_id(uri: str, experiment: str) -> dict[str, Any]:
    """Every run of ``experiment`` in the store, by id."""
    return {r.info.run_id: r for r in list_runs(uri, experiment)}


def read_id(path: Path, known: dict[str, Any] | set[str]) -> str | None:
    """A run id stored in ``path`` if that run still exists in the store."""
    if not path.is_file():
        return None
    run_id = path.read_text().strip()
    return run_id if run_id in known else None


def open_parent_run(uri: str, exp: Experiment, out_root: Path, known: dict[str, Any],
                    info: dict[str, Any]) -> Tracker:
    """Create, or continue, the sweep's parent run; record its id in the trial-folder root."""
    experiment_id(uri, exp.name)
    tags = {SWEEP_TAG: "1", EXPERIMENT_TAG: exp.name, GIT_REVISION_TAG: revision(),
            **environment_tags()}
    parent = Tracker(uri, exp.name, run_id=read_id(out_root / PARENT_ID_FILE, known),
                     run_name=f"sweep-{exp.name}", tags=tags)
    out_root.mkdir(parents=True, exist_ok=True)
    write_text(out_root / PARENT_ID_FILE, parent.run_id + "\n")
    parent.log_params(info)
    hashes = {t.name: trial_config_hash(t.cfg) for t in exp.trials}
    parent.log_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n", "trials.json")
    parent.log_artifact(exp.path)
    parent.log_text(pip_freeze(), FREEZE_ARTIFACT)
    return parent


def finish_parent_run(parent: Tracker, counts: dict[str, int], seconds: float,
                      failed: bool) -> None:
    """Log the sweep's counts and time; FINISHED (the report may use it) or FAILED."""
    parent.log_metrics({f"sweep/{k}": v for k, v in counts.items()} | {"sweep/seconds": seconds})
    parent.finish("FAILED" if failed else "FINISHED")


def abandon_parent_run(parent: Tracker, status: str) -> None:
    """Mark an interrupted (KILLED) or failed sweep; never masks the error in flight."""
    with contextlib.suppress(Exception):
        parent.finish(status)


def close_trial_run(uri: str, run_id: str | None, status: str, tags: dict[str, str]) -> None:
    """Set the final status of a trial's MLflow run that its process could not close."""
    if run_id is not None:
        Tracker(uri, "", run_id=run_id, tags=tags).finish(status)
