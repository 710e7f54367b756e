"""The software environment a run is made in: which lock file it was installed from (its
SHA-256), the installed versions of the packages results depend on most, and the code's git
revision (:func:`git_revision`).

Every trial run and every sweep parent run carries :func:`environment_tags`; the sweep's
parent also keeps the full ``pip freeze`` (:func:`pip_freeze`) as an artifact. A checkout's
lock is ``requirements/ripu.lock``; ``RIPU_LOCK_SHA256`` overrides it (a worker whose
checkout is elsewhere), and a run made without a lock file is tagged ``none``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ripu.record_names import LOCK_TAG, VERSION_TAG
from ripu.starts import file_sha256  # hashed once per version of the file

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "ripu.lock"
KEY_PACKAGES = ("torch", "ray", "mlflow", "dvc", "numpy")


def lock_sha256(lock: Path = LOCK) -> str:
    """The environment's lock hash: RIPU_LOCK_SHA256, else the checkout's lock file's,
    else ``"none"`` (installed without the project's lock)."""
    given = os.environ.get("RIPU_LOCK_SHA256")
    if given:
        return given
    return file_sha256(lock) if lock.is_file() else "none"


def installed_version(package: str) -> str:
    """The installed version of ``package``, or ``"absent"``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment_tags() -> dict[str, str]:
    """``ripu.lock_sha256`` and ``ripu.version.<package>`` for each of :data:`KEY_PACKAGES`."""
    return {LOCK_TAG: lock_sha256(),
            **{VERSION_TAG.format(p): installed_version(p) for p in KEY_PACKAGES}}


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


def pip_freeze() -> str:
    """``pip freeze --all`` of the running interpreter (every installed distribution)."""
    return subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], check=True,
                          capture_output=True, text=True).stdout
