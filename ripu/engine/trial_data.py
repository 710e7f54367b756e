"""A trial's datasets, checked before any work, and the per-class pixel counts it reports.

:func:`load_trial_data` builds the datasets a kind needs, decodes every target and val
label once (an unreadable file or an id outside the label map is a DatasetError before
training starts) and builds (or reads the cache of) the source class-balance lists, which
decodes the source labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ripu.anatomy import labelled_on_boundary
from ripu.config import Config
from ripu.data import SegmentationDataset, class_image_lists
from ripu.data.build import build_datasets
from ripu.data.labels import IGNORE_INDEX
from ripu.kinds import get_kind


@dataclass
class TrialData:
    """``datasets``: ``target`` and ``val``, plus ``source`` for kinds that use source
    batches. ``class_lists``: source images per class (None: uniform source draws)."""

    datasets: dict[str, SegmentationDataset]
    class_lists: dict[int, list[int]] | None = None


def splits(cfg: Config) -> list[str]:
    """The datasets ``cfg``'s kind reads: target and val, and source when it draws source
    batches."""
    return ["target", "val"] + (["source"] if get_kind(cfg.train.kind).uses_source else [])


def load_trial_data(cfg: Config, *, progress: bool = True) -> TrialData:
    """The datasets of ``cfg``'s kind with every label checked (see the module doc)."""
    datasets = build_datasets(cfg, only=splits(cfg))
    lists = None
    if "source" in datasets and cfg.data.class_balance:
        lists = source_class_lists(datasets["source"], progress=progress)
    check_labels(datasets, ("target", "val"), progress=progress)
    return TrialData(datasets, lists)


def source_class_lists(source: SegmentationDataset, *,
                       progress: bool = True) -> dict[int, list[int]] | None:
    """Class-balance lists of the source set, cached as ``.class_lists.json`` beside its
    label folder (computed without the cache when that folder is read-only)."""
    cache = Path(source.items[0][1]).parents[1] / ".class_lists.json" if len(source) else None
    try:
        return class_image_lists(source, cache, progress=progress)
    except OSError:  # read-only dataset folder: compute without caching
        return class_image_lists(source, None, progress=progress)


def check_labels(datasets: Mapping[str, SegmentationDataset], names: tuple[str, ...], *,
                 progress: bool = True) -> None:
    """Decode every label of the named datasets (DatasetError on the first bad one)."""
    for name in names:
        ds = datasets[name]
        for i in tqdm(range(len(ds)), desc=f"check {name} labels", disable=not progress,
                      leave=False):
            ds.read_label(i)


class PixelCounts(NamedTuple):
    """Per-class counts of the labelled and of all target pixels (int64 (C,) each), and the
    labelled pixels on ground-truth boundaries (:mod:`ripu.anatomy`)."""

    labelled: np.ndarray
    total: np.ndarray
    boundary: int


def class_pixel_counts(target: SegmentationDataset, labelled: Mapping[str, np.ndarray] | None,
                       *, everything: bool = False) -> PixelCounts:
    """Per-class counts of the labelled target pixels and of all target pixels, and the
    labelled ones on ground-truth boundaries, in one pass over the target.

    Labels are the training-size labels (``target[i]["label"]``, the resolution of the
    label state); ignore pixels (255) count in neither. ``labelled``: bool (H, W) masks by
    image id (None: nothing labelled, or every pixel with ``everything``; the boundary count
    is the masks' alone, 0 without them).

    Shape:
        labelled and total: int64 arrays (C,), C = ``target.num_classes``.
    """
    c = target.num_classes
    labelled_counts, total_counts = np.zeros(c, np.int64), np.zeros(c, np.int64)
    boundary = 0
    for i in range(len(target)):
        item = target[i]
        label = item["label"]
        valid = label != IGNORE_INDEX
        total_counts += torch.bincount(label[valid], minlength=c).numpy()[:c]
        if labelled is not None and item["id"] in labelled:
            mask = torch.from_numpy(np.asarray(labelled[item["id"]]))
            labelled_counts += torch.bincount(label[mask & valid], minlength=c).numpy()[:c]
            boundary += labelled_on_boundary(label, mask)
    if everything:
        labelled_counts = total_counts.copy()
    return PixelCounts(labelled_counts, total_counts, boundary)
