"""Reading runs back: an experiment's runs, one run, a metric's history, an artifact's
text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ripu.tracking.retry import retry_call
from ripu.tracking.store import mlflow_client


def list_runs(uri: str, experiment: str) -> list[Any]:
    """Every run of ``experiment`` (newest first), or [] when it does not exist."""
    client = mlflow_client(uri)
    exp = retry_call(lambda: client.get_experiment_by_name(experiment), uri)
    if exp is None:
        return []
    runs, token = [], None
    while True:
        page = retry_call(lambda t=token: client.search_runs([exp.experiment_id],
                                                         max_results=1000, page_token=t), uri)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def get_run(uri: str, run_id: str) -> Any | None:
    """The run ``run_id`` (status, metrics, tags), or None when the store has no such run."""
    client = mlflow_client(uri)
    try:
        return retry_call(lambda: client.get_run(run_id), uri)
    except Exception as exc:  # noqa: BLE001 - MlflowException carries the reason as a code
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of one metric of one run."""
    client = mlflow_client(uri)
    history = retry_call(lambda: client.get_metric_history(run_id, key), uri)
    return [(m.step, m.value) for m in history]


def read_artifact_text(uri: str, run_id: str, path: str) -> str:
    """The text of one artifact of a run (e.g. a sweep parent's ``trials.json``)."""
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow_client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = retry_call(lambda: client.download_artifacts(run_id, path, tmp), uri)
        return Path(local).read_text()
