"""A config's datasets: source (train), target (train) and target val, files checked."""

from __future__ import annotations

from collections.abc import Iterable

from ripu.config import Config
from ripu.data import SegmentationDataset, build_dataset
from ripu.data.transforms import SegTransform
from ripu.errors import DatasetError
from ripu.kinds import get_kind


def build_datasets(cfg: Config, *, augment: bool = True,
                   only: Iterable[str] = ("source", "target", "val")
                   ) -> dict[str, SegmentationDataset]:
    """The ``source`` (train), ``target`` (train) and ``val`` (target val) datasets.

    Every resize follows ``data.resize`` (ripu.data.transforms). Source images are resized to
    ``data.source_size`` (random crop and flip when ``augment``); target train images and
    labels to ``data.target_size`` (no randomness; the trainer flips target batches itself),
    except that with ``active.select_size: label`` a selecting kind keeps the target labels
    at full size, so selection scores there and the batches map labels and masks to the
    image size; val images are resized to ``data.eval_size`` and val labels stay at full
    size (logits are upsampled to them). Every file is checked to be a complete PNG; a
    DatasetError names the root key (``data.target_root``).
    """
    d = cfg.data
    label_size = cfg.active.select_size == "label" and get_kind(cfg.train.kind).selects
    makers = {
        "source": lambda: build_dataset(
            d.source, d.source_root, split="train", num_classes=d.num_classes,
            transform=SegTransform(size=d.source_size, crop=d.crop if augment else None,
                                   flip=d.flip and augment, resize=d.resize,
                                   norm=d.normalize)),
        "target": lambda: build_dataset(
            d.target, d.target_root, split="train", num_classes=d.num_classes,
            transform=SegTransform(size=d.target_size, resize=d.resize,
                                   resize_label=not label_size, norm=d.normalize)),
        "val": lambda: build_dataset(
            d.target, d.target_root, split="val", num_classes=d.num_classes,
            transform=SegTransform(size=d.eval_size, resize=d.resize, resize_label=False,
                                   norm=d.normalize)),
    }
    roots = {"source": "data.source_root", "target": "data.target_root",
             "val": "data.target_root"}
    sets = {}
    for name in only:
        try:
            sets[name] = makers[name]()
            sets[name].check_files()  # truncated files found before any work
            if d.keep_decoded:
                sets[name].keep_decoded()
        except DatasetError as err:
            raise DatasetError(f"{roots[name]}: {err}") from None
    return sets
