"""A real Label Studio server for the annotation tests, and a simulated annotator.

The server runs from its own environment (``make .venv-ls/.installed``) as its users start
it, ``label-studio start``, on a free loopback port with a temporary data folder; its first
user and that user's API token come from Label Studio's own start-up variables. It starts as
the drift check's do (``requirements/drift.py``, :func:`label_studio_server`). The
simulated annotator (``annotator.py``) runs in that environment too, so its brush strokes
are encoded by Label Studio's own converter, as the frontend encodes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "requirements"))
from drift import StepFailed, label_studio_server  # noqa: E402  (requirements/drift.py)

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


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Server:
    """A running server (:func:`drift.label_studio_server`, the drift check's); its token is
    set as $LABEL_STUDIO_TOKEN for the tests."""
    binary = LS_VENV / "bin" / "label-studio"
    assert binary.is_file(), f"{binary} missing: run `make .venv-ls/.installed` first"
    data = tmp_path_factory.mktemp("label-studio")
    try:
        with label_studio_server(binary, data, email="annotator@example.com",
                                 wait=START_TIMEOUT_S) as started:
            server = Server(*started)
            old = os.environ.get("LABEL_STUDIO_TOKEN")
            os.environ["LABEL_STUDIO_TOKEN"] = server.token
            yield server
            os.environ.pop("LABEL_STUDIO_TOKEN")
            if old is not None:
                os.environ["LABEL_STUDIO_TOKEN"] = old
    except StepFailed as exc:
        raise AssertionError(f"Label Studio did not start ({exc}): "
                             f"{(data / 'server.log').read_text()[-2000:]}") from None


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


