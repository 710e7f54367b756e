"""SYNTHIA (RAND_CITYSCAPES) reader: root/RGB/NNNNNNN.png, root/GT/LABELS/NNNNNNN.png."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ripu.data.base import SegmentationDataset, Transform, files_by_id, pair_items, require_dir
from ripu.data.labels import SYNTHIA_IDS, SYNTHIA_TO_TRAIN
from ripu.errors import DatasetError, RipuError


def read_synthia_label(path: Path) -> np.ndarray:
    """Raw SYNTHIA class ids: the first (R) channel of a 16-bit PNG, or its only channel.

    Shape:
        returns (H, W) uint16 (or uint8 for an 8-bit file)
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read label {path} (missing, truncated or not an image)")
    if raw.ndim == 2:
        return raw
    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        return raw[:, :, 2]  # OpenCV decodes to BGR(A): R, the class id, is channel 2
    raise DatasetError(f"label {path} has shape {raw.shape}; expected (H, W) or (H, W, 3)")


class SynthiaDataset(SegmentationDataset):
    """SYNTHIA-RAND-CITYSCAPES; raw ids map to the 16 classes (docs/method.md section 4)."""

    name = "synthia"

    def __init__(
        self, root: str | os.PathLike, num_classes: int = 16, transform: Transform | None = None
    ) -> None:
        if num_classes != 16:
            raise RipuError(f"synthia: num_classes must be 16, got {num_classes}; expected "
                            f"data.num_classes: 16 with a SYNTHIA source")
        root = require_dir(Path(root), "SYNTHIA root")
        image_dir = require_dir(root / "RGB", "SYNTHIA RGB folder")
        label_dir = require_dir(root / "GT" / "LABELS", "SYNTHIA GT/LABELS folder")
        items = pair_items(
            "synthia", files_by_id(image_dir, "*.png"), files_by_id(label_dir, "*.png"),
            image_dir, label_dir,
        )
        self.root = root
        super().__init__(items, SYNTHIA_TO_TRAIN, SYNTHIA_IDS, num_classes, transform)

    def _decode_label(self, path: Path) -> np.ndarray:
        return read_synthia_label(path)
