"""MLflow tracking: runs, params, metrics, artifacts. The only module that imports mlflow.

A :class:`Tracker` owns one MLflow run through an explicit ``MlflowClient`` (no global
"active run" state, so trials in threads or processes never mix up runs). Writes to a SQLite
store are retried on "database is locked", so several processes may share one store; sweeps
put an MLflow server in front of it instead (see :func:`serve`). A trial's tracker writes in
the background (``Tracker(..., background=True)``), so that training never waits for the store.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ripu.credentials import USER_ENV, check_login, refusal, use_credentials
from ripu.errors import RipuError
from ripu.record_names import PARENT_RUN_TAG

T = TypeVar("T")

PARAM_LIMIT = 6000  # MLflow's maximum param value length


RETRY_SECONDS = 300.0  # how long calls wait for an unreachable store (tracking.retry_seconds)
_LOCKED = ("locked", "busy", "temporarily")  # SQLite: retried a few times
_UNREACHABLE = ("connection", "timed out", "503", "502", "504")  # waited for (_Outage)
_BOUND = {"seconds": RETRY_SECONDS}  # this process's tracking.retry_seconds (retry_for)
_REFUSED = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}  # MLflow's codes of a refusal


class _Outage:
    """How long the calls to one store wait for it while it is unreachable (a restarting
    tracking server): from the first failed call, up to the process's bound
    (:func:`retry_for`), each retried with a backoff; a line on stderr when the wait starts
    and when the store answers again. Once a wait has run out, every later call to the store
    fails at once (the store is gone)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.since: float | None = None
        self.gone: str | None = None
        self.lock = threading.Lock()

    def failed(self, exc: Exception) -> float:
        """Note a failed call; the seconds left to wait (raises once they have run out)."""
        reason, bound = " ".join(str(exc).split())[:160], _BOUND["seconds"]
        with self.lock:
            now = time.monotonic()
            if self.since is None and self.gone is None:
                self.since = now
                _say(f"{_where(self.uri)} unreachable ({reason}); retrying for up to "
                     f"{bound:g} s (tracking.retry_seconds)")
            if self.gone is None and now - self.since >= bound:
                self.gone = (f"tracking.uri: {_where(self.uri)} unreachable for "
                             f"{bound:g} s ({reason}); expected the MLflow server back "
                             f"within tracking.retry_seconds")
            if self.gone is not None:
                raise RipuError(self.gone) from None
            return bound - (now - self.since)

    def answered(self) -> None:
        with self.lock:
            if self.since is not None and self.gone is None:
                _say(f"{_where(self.uri)} answers again after "
                     f"{time.monotonic() - self.since:.1f} s")
                self.since = None


_OUTAGES: dict[str, _Outage] = {}


def _outage(uri: str) -> _Outage:
    """The process's :class:`_Outage` of ``uri``."""
    return _OUTAGES.setdefault(uri, _Outage(uri))


def retry_for(seconds: float) -> None:
    """Let this process's calls to any tracking store wait up to ``seconds`` while it is
    unreachable (``tracking.retry_seconds``; :data:`RETRY_SECONDS` until set)."""
    _BOUND["seconds"] = seconds


def _where(uri: str) -> str:
    return uri if uri.startswith(("http://", "https://")) else "the tracking store " + uri


def _say(text: str) -> None:
    print(f"ripu: tracking: {text}", file=sys.stderr, flush=True)


def _retry(fn: Callable[[], T], uri: str, attempts: int = 30, delay: float = 0.1) -> T:
    """Call ``fn`` against the store at ``uri``, retrying transient errors: SQLite locks
    ``attempts`` times, an unreachable server for as long as its :class:`_Outage` allows."""
    for i in itertools.count():
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - mlflow wraps driver errors inconsistently
            code = _REFUSED.get(getattr(exc, "error_code", ""))
            if code is not None:  # the server refuses this user: waiting will not help
                raise RipuError(refusal(uri, code, os.environ.get(USER_ENV))) from None
            text = str(exc).lower()
            if any(s in text for s in _UNREACHABLE):
                left = _outage(uri).failed(exc)
                time.sleep(min(delay * 2 ** min(i, 6), 5.0, max(left, 0.1)))
                continue
            if not any(s in text for s in _LOCKED) or i >= attempts - 1:
                raise
            time.sleep(delay * min(2 ** i, 20))
            continue
        _outage(uri).answered()
        return result
    raise AssertionError("unreachable")


def _check_health(uri: str, timeout: float) -> None:
    """RipuError unless the MLflow server at ``uri`` answers its (unauthenticated) /health."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - user URI
            if resp.status != 200:
                raise RipuError(f"tracking.uri: {uri} answered {resp.status} on /health, "
                                f"expected a running MLflow server")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RipuError(f"tracking.uri: cannot reach {uri} ({reason}), expected a running "
                        f"MLflow server") from None


def check_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (RipuError) when a tracking URI cannot be reached or written, or its server
    refuses this process's credentials (:func:`ripu.credentials.check_login`)."""
    if uri.startswith(("http://", "https://")):
        from mlflow.utils.credentials import read_mlflow_creds

        _check_health(uri, timeout)
        user = read_mlflow_creds()  # as the client sends it: environment, ~/.mlflow/credentials
        check_login(uri, user.username, user.password, timeout)
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).expanduser().resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise RipuError(f"tracking.uri: folder {folder} of {uri} is missing or not "
                            f"writable, expected a writable folder for the SQLite store")
    elif uri.startswith(("file:", "/")):
        folder = Path(uri.removeprefix("file://").removeprefix("file:")).resolve()
        if not folder.parent.is_dir():
            raise RipuError(f"tracking.uri: folder {folder.parent} does not exist")
    else:
        raise RipuError(f"tracking.uri: unsupported URI {uri!r}, expected sqlite:///FILE, "
                        f"http(s)://HOST:PORT or a folder")


def check_tracking(tracking: Any) -> None:
    """:func:`check_uri` of ``tracking.uri`` (a TrackingConfig) with its user
    (:func:`ripu.credentials.use_credentials`) in use."""
    use_credentials(tracking)
    check_uri(tracking.uri)


def absolute_uri(uri: str, root: Path) -> str:
    """Make a relative ``sqlite:///file`` URI absolute against ``root`` (trials change folder)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((root / uri[len("sqlite:///"):]).resolve())
    return uri


def git_revision(cwd: str | Path | None = None) -> str:
    """The git commit of ``cwd`` (with ``-dirty`` when modified), or "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """For a SQLite store, an exclusive lock on its folder while the block runs: MLflow creates
    and migrates a new database when a client opens it, and several processes doing so at
    once corrupt the schema ("duplicate column name"). No-op for other stores (and where
    ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    if fcntl is None or not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(uri[len("sqlite:///"):]).expanduser().resolve().parent
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    # :func:`_retry` waits for an unreachable server; MLflow's own retries would multiply it
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    with _store_lock(uri):
        return MlflowClient(tracking_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing (safe under concurrent creation)."""
    client = _client(uri)

    def get_or_create() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:  # noqa: BLE001 - created meanwhile by another process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
    return _retry(get_or_create, uri)


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
        self.client = _client(uri)
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
        (:func:`_retry`)."""
        return _retry(fn, self.uri)

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


def list_runs(uri: str, experiment: str) -> list[Any]:
    """Every run of ``experiment`` (newest first), or [] when it does not exist."""
    client = _client(uri)
    exp = _retry(lambda: client.get_experiment_by_name(experiment), uri)
    if exp is None:
        return []
    runs, token = [], None
    while True:
        page = _retry(lambda t=token: client.search_runs([exp.experiment_id],
                                                         max_results=1000, page_token=t), uri)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def get_run(uri: str, run_id: str) -> Any | None:
    """The run ``run_id`` (status, metrics, tags), or None when the store has no such run."""
    client = _client(uri)
    try:
        return _retry(lambda: client.get_run(run_id), uri)
    except Exception as exc:  # noqa: BLE001 - MlflowException carries the reason as a code
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of one metric of one run."""
    client = _client(uri)
    return [(m.step, m.value) for m in _retry(lambda: client.get_metric_history(run_id, key), uri)]


def read_artifact_text(uri: str, run_id: str, path: str) -> str:
    """The text of one artifact of a run (e.g. a sweep parent's ``trials.json``)."""
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = _client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = _retry(lambda: client.download_artifacts(run_id, path, tmp), uri)
        return Path(local).read_text()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve(backend_uri: str, artifacts: str | Path, *, host: str = "127.0.0.1",
          port: int | None = None, timeout: float = 120.0, app_name: str | None = None,
          env: Mapping[str, str] | None = None, cwd: str | Path | None = None
          ) -> Iterator[str]:
    """Run an MLflow tracking server over ``backend_uri`` while the block runs; yield its URL.

    Many processes can then log concurrently through HTTP while one server writes the store.
    ``app_name``: an MLflow server app (``basic-auth``: users and passwords, configured by
    ``env``'s MLFLOW_AUTH_CONFIG_PATH, MLFLOW_FLASK_SERVER_SECRET_KEY, ...); ``cwd``: the
    server's working folder (relative paths in that config resolve there).
    """
    port = port or free_port(host)
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(Path(artifacts).resolve()),
           "--host", host, "--port", str(port), "--workers", "1",
           *(["--app-name", app_name] if app_name else [])]
    log = open(Path(artifacts) / "server.log", "ab")  # noqa: SIM115 - closed below
    # No background job workers (huey): a tracking server for trials needs none of them.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    # Its own session: a Ctrl-C in the terminal reaches the caller, which stops the server.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RipuError(f"the MLflow server exited early (code {proc.returncode}); see "
                                f"{Path(artifacts) / 'server.log'}")
            try:
                _check_health(url, timeout=2)
                break
            except RipuError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
