"""A tracking store: checking that it can be reached and written (before any work), its
MLflow client, its experiments."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ripu.credentials import check_login, use_credentials
from ripu.errors import RipuError
from ripu.tracking.retry import retry_call


def check_health(uri: str, timeout: float) -> None:
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

        check_health(uri, timeout)
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


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    # :func:`retry_call` waits for an unreachable server; MLflow's own retries would multiply it
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    with _store_lock(uri):
        return MlflowClient(tracking_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing (safe under concurrent creation)."""
    client = mlflow_client(uri)

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
    return retry_call(get_or_create, uri)
