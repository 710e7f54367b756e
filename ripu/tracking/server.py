"""The MLflow tracking server's lifecycle: started in front of a store while a block runs
(sweeps: many trial processes log through it), stopped after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ripu.errors import RipuError
from ripu.tracking.store import check_health


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
                check_health(url, timeout=2)
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
