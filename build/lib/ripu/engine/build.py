"""Datasets, model and device from a :class:`~ripu.config.Config` (no folder names here)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ripu.config import Config
from ripu.data import SegmentationDataset, build_dataset
from ripu.data.transforms import SegTransform
from ripu.errors import DatasetError, RipuError
from ripu.kinds import get_kind
from ripu.models import build_model


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


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA device is a RipuError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RipuError(f"train.device: unknown device {name!r}, expected auto, cpu, cuda "
                        f"or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RipuError(f"train.device: {name} requested but CUDA is not available")
    return device


def build_model_from(cfg: Config, device: torch.device) -> torch.nn.Module:
    m = cfg.model
    pretrained = Path(m.pretrained) if m.pretrained else None
    return build_model(m.arch, cfg.data.num_classes, backbone=m.backbone, pretrained=pretrained,
                       freeze_bn=m.freeze_bn, bn_batch_stats=m.bn_batch_stats,
                       seed=cfg.seed, width=m.width).to(device)
