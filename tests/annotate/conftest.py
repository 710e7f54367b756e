"""A real Label Studio server for the annotation tests, and a simulated annotator.

The server runs from its own environment (``make .venv-ls/.installed``) as its users start
it, ``label-studio start``, on a free loopback port with a temporary data folder; its first
user and that user's API token come from Label Studio's own start-up variables. The
simulated annotator (``annotator.py``) runs in that environment too, so its brush strokes
are encoded by Label Studio's own converter, as the frontend encodes them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("RIPU_LABEL_STUDIO_VENV", REPO / ".venv-ls"))
ANNOTATOR = Path(__file__).with_name("annotator.py")
START_TIMEOUT_S = 400


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    email: str
    password: str

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "LABEL_STUDIO_TOKEN": self.token, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Server:
    """A running server; its token is set as $LABEL_STUDIO_TOKEN for the tests."""
    binary = LS_VENV / "bin" / "label-studio"
    assert binary.is_file(), f"{binary} missing: run `make .venv-ls/.installed` first"
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", secrets.token_hex(20), "annotator@example.com",
                    secrets.token_urlsafe(12))
    env = {**os.environ, "LABEL_STUDIO_USERNAME": server.email,
           "LABEL_STUDIO_PASSWORD": server.password, "LABEL_STUDIO_USER_TOKEN": server.token,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_BASE_DATA_DIR": str(data)}
    log = open(data / "server.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen([str(binary), "start", "--no-browser", "--internal-host",
                             "127.0.0.1", "--port", str(port), "--data-dir", str(data)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data,
                            start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _up(server.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"Label Studio did not start: {(data / 'server.log').read_text()[-2000:]}")
        time.sleep(2)
    old = os.environ.get("LABEL_STUDIO_TOKEN")
    os.environ["LABEL_STUDIO_TOKEN"] = server.token
    yield server
    os.environ.pop("LABEL_STUDIO_TOKEN")
    if old is not None:
        os.environ["LABEL_STUDIO_TOKEN"] = old
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def annotate(server: Server, project: int, round_index: int, truth: dict[str, np.ndarray],
             class_names, tmp_path: Path, *args: str) -> dict:
    """Answer the round's open tasks from ``truth`` (id -> uint8 (H, W) at the tasks' size)
    through the API; ``args`` are annotator.py options. Returns its summary."""
    path = tmp_path / f"truth_{round_index}.npz"
    ids = sorted(truth)
    np.savez(path, ids=np.array(ids), names=np.array(list(class_names)),
             **{f"m{k}": truth[i] for k, i in enumerate(ids)})
    done = subprocess.run([str(LS_VENV / "bin" / "python"), str(ANNOTATOR), server.url,
                           str(project), str(round_index), str(path), *args],
                          env=server.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def python_in_ls(*args: str, env: dict[str, str], timeout: int = 300
                 ) -> subprocess.CompletedProcess:
    """Run a script with Label Studio's environment (e.g. Playwright)."""
    return subprocess.run([str(LS_VENV / "bin" / "python"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


