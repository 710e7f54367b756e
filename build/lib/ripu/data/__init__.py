"""Datasets in their on-disk layouts, label maps, transforms and class-balanced sampling."""

from __future__ import annotations

import os
from collections.abc import Callable

from ripu.data.base import SegmentationDataset, Transform, check_split
from ripu.data.cityscapes import CityscapesDataset
from ripu.data.gta5 import GTA5Dataset
from ripu.data.labels import (
    CITYSCAPES_TO_TRAIN,
    CLASSES_13,
    CLASSES_16,
    CLASSES_19,
    IGNORE_INDEX,
    MIOU13_IN_16,
    SYNTHIA_TO_TRAIN,
    TRAIN19_TO_16,
    class_names,
    lut,
    map_labels,
)
from ripu.data.sampling import ClassBalancedSampler, class_image_lists
from ripu.data.synthia import SynthiaDataset
from ripu.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegTransform,
    denormalize,
    normalize,
)
from ripu.errors import RipuError

DatasetFactory = Callable[..., SegmentationDataset]


def _single_split(cls: type[SegmentationDataset]) -> DatasetFactory:
    """A factory for a source dataset, which has only the "train" split."""

    def build(root: str | os.PathLike, split: str, num_classes: int, transform=None):
        check_split(cls.name, split, ("train",))
        return cls(root, num_classes=num_classes, transform=transform)

    return build


DATASETS: dict[str, DatasetFactory] = {
    "gta5": _single_split(GTA5Dataset),
    "synthia": _single_split(SynthiaDataset),
    "cityscapes": CityscapesDataset,
}


def build_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    num_classes: int = 19,
    transform: Transform | None = None,
) -> SegmentationDataset:
    """The dataset registered under ``name`` (see DATASETS)."""
    if name not in DATASETS:
        raise RipuError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root, split, num_classes, transform)


__all__ = [
    "CITYSCAPES_TO_TRAIN", "CLASSES_13", "CLASSES_16", "CLASSES_19", "DATASETS", "IGNORE_INDEX",
    "IMAGENET_MEAN", "IMAGENET_STD", "MIOU13_IN_16", "SYNTHIA_TO_TRAIN", "TRAIN19_TO_16",
    "ClassBalancedSampler", "CityscapesDataset", "GTA5Dataset", "SegTransform",
    "SegmentationDataset", "SynthiaDataset", "build_dataset", "class_image_lists", "class_names",
    "denormalize", "lut", "map_labels", "normalize",
]
