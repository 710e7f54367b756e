"""A people-labelled round on disk: ``labels_<r>.npz`` beside the round's ``round_<r>.npz``.

Per image id a uint8 (H, W) map at the label state's resolution: the class people painted on
a pixel selected in round ``r``, 255 everywhere else (not selected, or selected and left
unpainted). A JSON header holds the pull's report and the annotations used (id and time),
so later pulls can tell an annotation made after the round closed. Written atomically: the
file exists only once the round is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ripu.data.labels import IGNORE_INDEX as IGNORE
from ripu.errors import RipuError
from ripu.io import atomic_path


def labels_path(masks_dir: Path, round_index: int) -> Path:
    return Path(masks_dir) / f"labels_{round_index}.npz"


def save_round_labels(path: Path, labels: Mapping[str, np.ndarray],
                      header: dict[str, Any]) -> Path:
    """Write ``labels`` (id -> uint8 (H, W)) and ``header`` to ``path`` atomically."""
    ids = sorted(labels)
    shapes = np.array([labels[i].shape for i in ids], dtype=np.int64).reshape(-1, 2)
    flat = (np.concatenate([labels[i].ravel() for i in ids]) if ids
            else np.zeros(0, np.uint8)).astype(np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, header=np.array(json.dumps(header, sort_keys=True)),
                            ids=np.array(ids, dtype=str) if ids else np.zeros(0, "<U1"),
                            shapes=shapes, labels=flat)
    return path


def load_round_labels(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(id -> uint8 (H, W) map, header)`` of a file written by :func:`save_round_labels`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            ids, shapes, flat = [str(i) for i in data["ids"]], data["shapes"], data["labels"]
    except (OSError, ValueError, KeyError) as err:
        raise RipuError(f"{path}: cannot read round labels ({err}); expected a labels_<r>.npz "
                        f"written by ripu") from err
    sizes = [int(h) * int(w) for h, w in shapes]
    if sum(sizes) != flat.size:
        raise RipuError(f"{path}: corrupt round labels (sizes do not match the shapes)")
    offsets = np.cumsum([0, *sizes])
    return ({i: flat[offsets[k]:offsets[k + 1]].reshape(int(shapes[k, 0]), int(shapes[k, 1]))
             for k, i in enumerate(ids)}, header)


def merge_rounds(rounds: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One map per image over several rounds: each round's labelled pixels (their selections
    never overlap), 255 elsewhere."""
    merged: dict[str, np.ndarray] = {}
    for labels in rounds:
        for image_id, lab in labels.items():
            base = merged.setdefault(image_id, np.full(lab.shape, IGNORE, np.uint8))
            base[lab != IGNORE] = lab[lab != IGNORE]
    return merged
