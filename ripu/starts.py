"""Where a trial's weights start, and the file hash that makes the start part of its identity.

A trial starts from a checkpoint (a warm-up ``<folder>/<experiment>/<name>.pt`` or
``--init FILE``), from ImageNet weights (``model.pretrained``, loaded into a DeepLab's
backbone), or from the model as ``model.*`` and the seed build it (the small network, which
has no weights file). The first two are named by the file's stem (``source_only``) or
``imagenet`` and identified by the file's SHA-256: a finished trial counts as done, and a
checkpoint is resumed, only while the start it recorded is the start's file now. A start
without a file has no hash; the config hash covers it. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ripu.archs import ARCHS
from ripu.config import Config
from ripu.record_names import START_SHA256_TAG, START_TAG

IMAGENET = "imagenet"


@dataclass(frozen=True)
class Start:
    """A trial's start: ``name`` (a checkpoint's file stem, or ``imagenet``), the weights
    file (None: none) and its SHA-256 (None: no file)."""

    name: str
    path: str | None
    sha256: str | None

    def describe(self) -> str:
        """``source_only (sha256 1a2b3c4d5e6f)``, or ``imagenet (no weights file)``."""
        return f"{self.name} ({f'sha256 {self.sha256[:12]}' if self.sha256 else 'no weights file'})"

    def tags(self) -> dict[str, str]:
        """The MLflow tags a trial's run carries: ``ripu.start``, ``ripu.start_sha256``."""
        return {START_TAG: self.name, START_SHA256_TAG: self.sha256 or ""}


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, computed once per version of it (size, mtime, inode)."""
    path = os.path.realpath(path)
    st = os.stat(path)
    return _sha256(path, st.st_size, st.st_mtime_ns, st.st_ino)


def start_of(cfg: Config, init: str | Path | None = None) -> Start:
    """The start of a trial of ``cfg`` initialised from ``init`` (None: as ``model.*``
    builds it). The file must exist (callers check it first)."""
    if init is not None:
        return Start(Path(init).stem, str(init), file_sha256(init))
    if ARCHS[cfg.model.arch].imagenet and cfg.model.pretrained:
        return Start(IMAGENET, cfg.model.pretrained, file_sha256(cfg.model.pretrained))
    return Start(IMAGENET, None, None)
