"""Cityscapes reader: leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and
gtFine/<split>/<city>/<name>_gtFine_labelIds.png; the image id is "<city>/<name>"."""

from __future__ import annotations

import os
from pathlib import Path

from ripu.data.base import (
    SegmentationDataset,
    Transform,
    check_split,
    files_by_id,
    pair_items,
    require_dir,
)
from ripu.data.labels import CITYSCAPES_IDS, train_id_mapping

SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations in 19 or 16 classes (docs/method.md section 4)."""

    name = "cityscapes"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_classes: int = 19,
        transform: Transform | None = None,
    ) -> None:
        check_split("cityscapes", split, SPLITS)
        mapping = train_id_mapping(num_classes)
        root = require_dir(Path(root), "Cityscapes root")
        image_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes {split} images folder")
        label_dir = require_dir(root / "gtFine" / split, f"Cityscapes {split} labels folder")
        items = pair_items(
            "cityscapes",
            files_by_id(image_dir, f"*/*{IMAGE_SUFFIX}", IMAGE_SUFFIX),
            files_by_id(label_dir, f"*/*{LABEL_SUFFIX}", LABEL_SUFFIX),
            image_dir, label_dir,
        )
        self.root = root
        self.split = split
        super().__init__(items, mapping, CITYSCAPES_IDS, num_classes, transform)
