"""A trial's start (ripu.starts): which file its weights come from, and that file's hash."""

from __future__ import annotations

import hashlib
import os

from ripu.starts import IMAGENET, Start, file_sha256, start_of
from tests.conftest import tiny_config


def test_a_start_is_named_by_its_file_and_identified_by_its_hash(tmp_path):
    warmup = tmp_path / "source_only.pt"
    warmup.write_bytes(b"weights one")
    cfg = tiny_config(tmp_path, tmp_path)
    start = start_of(cfg, warmup)
    assert start == Start("source_only", str(warmup), hashlib.sha256(b"weights one").hexdigest())
    assert start.describe() == f"source_only (sha256 {start.sha256[:12]})"
    assert start.tags() == {"ripu.start": "source_only", "ripu.start_sha256": start.sha256}
    warmup.write_bytes(b"weights two, rebuilt")  # another version: hashed again
    os.utime(warmup, ns=(1, 1))
    assert file_sha256(warmup) == hashlib.sha256(b"weights two, rebuilt").hexdigest()

    # ImageNet: the pretrained file of a DeepLab; the small network has no weights file
    assert start_of(cfg) == Start(IMAGENET, None, None)
    assert start_of(cfg).describe() == "imagenet (no weights file)"
    deeplab = tiny_config(tmp_path, tmp_path, **{"model.arch": "deeplabv2",
                                                 "model.pretrained": str(warmup)})
    assert start_of(deeplab) == Start(IMAGENET, str(warmup), file_sha256(warmup))
