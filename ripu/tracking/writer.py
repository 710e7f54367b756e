"""The writer of one MLflow run, :class:`Tracker`: in the calling thread, or in the
background on two ordered lanes (values; files) so that training never waits for the store."""

from __future__ import annotations

import atexit
import math
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ripu.record_names import PARENT_RUN_TAG
from ripu.tracking.retry import retry_call
from ripu.tracking.store import experiment_id, mlflow_client

T = TypeVar("T")

PARAM_LIMIT = 6000  # MLflow's maximum param value length


class _Lane:
    """One background thread that runs a tracker's writes in order (FIFO).

    Consecutive metric batches waiting in the queue are sent as one ``log_batch`` (at most
    :data:`METRIC_BATCH` metrics per call). A failed write is kept and raised by the next
    :meth:`drain` (the writes after it still run).
    """

    def __init__(self, name: str, send_metrics: Callable[[list[Any]], None]) -> None:
        self.name = name
        self._send_metrics = send_metrics
        self._jobs: deque[tuple[str, Any]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.busy_seconds = 0.0  # time spent writing (reported by the benchmark)

    def put(self, kind: str, payload: Any) -> None:
        """Queue ``("metrics", [Metric, ...])`` or ``("call", fn)``."""
        with self._cond:
            self._jobs.append((kind, payload))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _next(self) -> tuple[str, Any] | None:
        """The next job (metric batches merged), or None: the queue is empty and the thread
        ends (:meth:`put` starts a new one)."""
        with self._cond:
            if not self._jobs:
                self._thread = None
                return None
            kind, payload = self._jobs.popleft()
            if kind == "metrics":
                payload = list(payload)
                while self._jobs and self._jobs[0][0] == "metrics":
                    payload.extend(self._jobs.popleft()[1])
            self._busy = True
            return kind, payload

    def _run(self) -> None:
        while (job := self._next()) is not None:
            kind, payload = job
            start = time.perf_counter()
            try:
                payload() if kind == "call" else self._send_metrics(payload)
            except BaseException as exc:  # noqa: BLE001 - handed to the next drain()
                with self._cond:
                    self._error = self._error or exc
            finally:
                with self._cond:
                    self.busy_seconds += time.perf_counter() - start
                    self._busy = False
                    self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every queued write is done; raise the first failed write's error."""
        with self._cond:
            while self._jobs or self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error


METRIC_BATCH = 1000  # MLflow's maximum number of metrics per log_batch call


class Tracker:
    """One MLflow run: create it, or continue it by ``run_id`` (resumed trials).

    With ``background=True`` every write returns at once and runs on background threads:
    values (metrics, params, tags; metric batches queued together go as one ``log_batch``)
    and files (artifacts, texts, figures) each keep their order. :meth:`flush` waits for
    them (``files=False``: values only) and raises a failed write's error; :meth:`finish`
    flushes everything before it sets the run's status, and so does the end of the process.
    :meth:`log_file` takes a function that writes the file, so that even drawing it happens
    in the background. Without ``background`` every write is done before the call returns.

    Calls wait for an unreachable store (:class:`_Outage`, :func:`retry_for`). With
    ``once_per_step``, a continued run keeps one value per metric and step: metrics at steps
    its earlier attempts logged (a trial replays the steps after its last checkpoint when it
    resumes) are not sent again.
    """

    def __init__(self, uri: str, experiment: str, *, run_name: str | None = None,
                 tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                 run_id: str | None = None, background: bool = False,
                 once_per_step: bool = False) -> None:
        self.uri = uri
        self.client = mlflow_client(uri)
        self._logged: dict[str, int] | None = None if run_id and once_per_step else {}
        self.background = background
        self._values = _Lane("ripu-tracking-values", self._send_metrics)
        self._files = _Lane("ripu-tracking-files", self._send_metrics)
        if run_id is None:
            tags = dict(tags or {})
            if parent_run_id:
                tags[PARENT_RUN_TAG] = parent_run_id
            exp_id = experiment_id(uri, experiment)
            run = self._call(lambda: self.client.create_run(exp_id, tags=tags, run_name=run_name))
            run_id = run.info.run_id
        else:
            self._call(lambda: self.client.update_run(run_id, status="RUNNING"))
            self.run_id = run_id
            if tags:
                self.set_tags(tags)
        self.run_id = run_id
        if background:
            _OPEN.add(self)

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` (a call to the store), retried while the store is unreachable
        (:func:`retry_call`)."""
        return retry_call(fn, self.uri)

    def _submit(self, lane: _Lane, kind: str, payload: Any) -> None:
        """Run a write now, or queue it on ``lane``. ``payload``: a function (``"call"``) or
        a list of metrics (``"metrics"``)."""
        if self.background:
            lane.put(kind, payload)
        elif kind == "metrics":
            self._send_metrics(payload)
        else:
            payload()

    def _last_steps(self) -> dict[str, int]:
        """The last step of every metric the run had when this tracker took it over."""
        if self._logged is None:
            run = self._call(lambda: self.client.get_run(self.run_id))
            self._logged = {key: max((m.step for m in self._call(
                lambda key=key: self.client.get_metric_history(self.run_id, key))), default=-1)
                for key in run.data.metrics}
        return self._logged

    def _send_metrics(self, metrics: list[Any]) -> None:
        last = self._last_steps()
        metrics = [m for m in metrics if m.step > last.get(m.key, -1)]
        for i in range(0, len(metrics), METRIC_BATCH):
            chunk = metrics[i:i + METRIC_BATCH]
            self._call(lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._submit(self._values, "call",
                     lambda: self._call(lambda: self.client.log_batch(self.run_id, tags=batch)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values stringified, truncated to MLflow's limit), 100 per batch; a
        resumed run keeps the params it has."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_LIMIT]) for k, v in params.items()]

        def write() -> None:
            existing = self._call(lambda: self.client.get_run(self.run_id)).data.params
            todo = [p for p in items if p.key not in existing]
            for i in range(0, len(todo), 100):
                chunk = todo[i:i + 100]
                self._call(lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk))
        self._submit(self._values, "call", write)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log finite numeric metrics at ``step`` (NaN ones are skipped)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))]
        if batch:
            self._submit(self._values, "metrics", batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file. In the background the file is read later: do not change it."""
        path = str(path)
        self._submit(self._files, "call", lambda: self._call(
            lambda: self.client.log_artifact(self.run_id, path, artifact_path)))

    def log_file(self, write: Callable[[Path], Any], artifact_file: str) -> None:
        """Log the file that ``write(path)`` writes (called in the background, if any) as
        ``artifact_file`` (a path inside the run's artifacts)."""
        import tempfile

        def job() -> None:
            with tempfile.TemporaryDirectory(prefix="ripu-artifact-") as tmp:
                local = Path(tmp) / Path(artifact_file).name
                write(local)
                folder = str(Path(artifact_file).parent)
                self._call(lambda: self.client.log_artifact(
                    self.run_id, str(local), None if folder == "." else folder))
        self._submit(self._files, "call", job)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure (drawn in the background, if any: do not change it)."""
        self._submit(self._files, "call", lambda: self._call(
            lambda: self.client.log_figure(self.run_id, figure, artifact_file)))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._submit(self._files, "call", lambda: self._call(
            lambda: self.client.log_text(self.run_id, text, artifact_file)))

    def artifact_names(self, folder: str) -> set[str]:
        """The names of the run's artifacts in ``folder`` (written ones: flushes first)."""
        self.flush()
        files = self._call(lambda: self.client.list_artifacts(self.run_id, folder))
        return {Path(f.path).name for f in files}

    @property
    def background_seconds(self) -> float:
        """Seconds the background threads have spent writing."""
        return self._values.busy_seconds + self._files.busy_seconds

    def flush(self, *, files: bool = True) -> None:
        """Wait for the queued writes (values, and with ``files`` the files too); raise the
        error of a write that failed."""
        self._values.drain()
        if files:
            self._files.drain()

    def finish(self, status: str = "FINISHED") -> None:
        """Flush every queued write, then set the run's final status."""
        _OPEN.discard(self)
        try:
            self.flush()
        finally:
            self._call(lambda: self.client.set_terminated(self.run_id, status=status))


_OPEN: weakref.WeakSet[Tracker] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """A process that ends without :meth:`Tracker.finish` still writes what it queued."""
    for tracker in list(_OPEN):
        try:
            tracker.flush()
        except Exception as exc:  # noqa: BLE001 - report and go on at exit
            print(f"ripu: tracking: a queued write failed at exit: {exc}", file=sys.stderr)
