"""MLflow tracking: runs, params, metrics, artifacts. The only package that imports mlflow.

A :class:`Tracker` owns one MLflow run through an explicit ``MlflowClient`` (no global
"active run" state, so trials in threads or processes never mix up runs). Writes to a SQLite
store are retried on "database is locked", so several processes may share one store; sweeps
put an MLflow server in front of it instead (see :func:`serve`). A trial's tracker writes in
the background (``Tracker(..., background=True)``), so that training never waits for the store.

One module a job: :mod:`~ripu.tracking.retry` (the retry policy: locks, a server's outage,
refusals), :mod:`~ripu.tracking.store` (checking a store, its client and experiments),
:mod:`~ripu.tracking.writer` (the background writer, :class:`Tracker`),
:mod:`~ripu.tracking.queries` (reading runs back) and :mod:`~ripu.tracking.server` (the
server's lifecycle). Their public names are importable from here.
"""

from ripu.tracking.queries import get_run, list_runs, metric_history, read_artifact_text
from ripu.tracking.retry import RETRY_SECONDS, retry_for
from ripu.tracking.server import free_port, serve
from ripu.tracking.store import absolute_uri, check_tracking, check_uri, experiment_id
from ripu.tracking.writer import METRIC_BATCH, PARAM_LIMIT, Tracker

__all__ = [
    "METRIC_BATCH", "PARAM_LIMIT", "RETRY_SECONDS", "Tracker", "absolute_uri",
    "check_tracking", "check_uri", "experiment_id", "free_port", "get_run", "list_runs",
    "metric_history", "read_artifact_text", "retry_for", "serve",
]
