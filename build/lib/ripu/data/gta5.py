"""GTA5 reader: root/images/NNNNN.png, root/labels/NNNNN.png (Cityscapes label ids)."""

from __future__ import annotations

import os
from pathlib import Path

from ripu.data.base import SegmentationDataset, Transform, files_by_id, pair_items, require_dir
from ripu.data.labels import GTA5_IDS, train_id_mapping


class GTA5Dataset(SegmentationDataset):
    """GTA5 in its release layout; labels are palette PNGs of Cityscapes label ids.

    ``num_classes`` 19 maps ids to train ids; 16 further drops terrain, truck, train
    (docs/method.md section 4). Id 34 (present in a few GTA5 files) is accepted and ignored.
    The image id is the file stem.
    """

    name = "gta5"

    def __init__(
        self, root: str | os.PathLike, num_classes: int = 19, transform: Transform | None = None
    ) -> None:
        mapping = train_id_mapping(num_classes)
        root = require_dir(Path(root), "GTA5 root")
        image_dir = require_dir(root / "images", "GTA5 images folder")
        label_dir = require_dir(root / "labels", "GTA5 labels folder")
        items = pair_items(
            "gta5", files_by_id(image_dir, "*.png"), files_by_id(label_dir, "*.png"),
            image_dir, label_dir,
        )
        self.root = root
        super().__init__(items, mapping, GTA5_IDS, num_classes, transform)
