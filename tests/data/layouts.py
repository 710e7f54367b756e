"""Write tiny datasets in the exact on-disk layouts of GTA5, SYNTHIA and Cityscapes.

Each writer takes raw label id arrays (H, W) and, optionally, RGB images (H, W, 3) uint8;
without images, ``image_for(label)`` makes one. Writers return the image ids in sorted order.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Cityscapes colours of label ids 0..33 in the GTA5 palette PNGs (unused ids black).
_PALETTE = {
    7: (128, 64, 128), 8: (244, 35, 232), 11: (70, 70, 70), 12: (102, 102, 156),
    13: (190, 153, 153), 17: (153, 153, 153), 19: (250, 170, 30), 20: (220, 220, 0),
    21: (107, 142, 35), 22: (152, 251, 152), 23: (70, 130, 180), 24: (220, 20, 60),
    25: (255, 0, 0), 26: (0, 0, 142), 27: (0, 0, 70), 28: (0, 60, 100), 31: (0, 80, 100),
    32: (0, 0, 230), 33: (119, 11, 32),
}


def image_for(label: np.ndarray) -> np.ndarray:
    """A deterministic RGB image for a label: R = id mod 256, G = 3 * column, B = 200 - 5 * row
    (all mod 256), so each channel is distinct and RGB/BGR swaps show."""
    h, w = label.shape
    rows, cols = np.mgrid[0:h, 0:w]
    channels = (label.astype(np.int64) % 256, (3 * cols) % 256, (200 - 5 * rows) % 256)
    return np.stack(channels, axis=-1).astype(np.uint8)


def write_rgb(path: Path, image: np.ndarray) -> None:
    """An 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_palette_label(path: Path, label: np.ndarray) -> None:
    """An 8-bit palette PNG holding the ids as indices (as GTA5 ships its labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(label.astype(np.uint8))  # mode L; putpalette makes it P
    palette = [0] * 768
    for i, rgb in _PALETTE.items():
        palette[3 * i:3 * i + 3] = rgb
    img.putpalette(palette)
    img.save(path)


def write_gray_label(path: Path, label: np.ndarray) -> None:
    """An 8-bit single-channel PNG (Cityscapes labelIds / instanceIds style)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def write_synthia_label(path: Path, label: np.ndarray) -> None:
    """A 16-bit 3-channel PNG: R = class id, G = an instance id, B = 0 (SYNTHIA GT/LABELS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.zeros((*label.shape, 3), dtype=np.uint16)
    bgr[..., 2] = label
    bgr[..., 1] = 1000 + label.astype(np.uint16)  # instance ids, which the reader must skip
    assert cv2.imwrite(str(path), bgr)


def _images(labels: list[np.ndarray], images: list[np.ndarray] | None) -> list[np.ndarray]:
    if images is None:
        return [image_for(label) for label in labels]
    return images


def write_gta5(
    root: Path, labels: list[np.ndarray], images: list[np.ndarray] | None = None
) -> list[str]:
    """root/images/NNNNN.png (RGB) and root/labels/NNNNN.png (palette ids), from 00001."""
    ids = []
    for i, (label, image) in enumerate(zip(labels, _images(labels, images), strict=True), start=1):
        name = f"{i:05d}"
        write_rgb(root / "images" / f"{name}.png", image)
        write_palette_label(root / "labels" / f"{name}.png", label)
        ids.append(name)
    return ids


def write_synthia(
    root: Path, labels: list[np.ndarray], images: list[np.ndarray] | None = None
) -> list[str]:
    """root/RGB/NNNNNNN.png and root/GT/LABELS/NNNNNNN.png (16-bit, 3 channels), from 0."""
    ids = []
    for i, (label, image) in enumerate(zip(labels, _images(labels, images), strict=True)):
        name = f"{i:07d}"
        write_rgb(root / "RGB" / f"{name}.png", image)
        write_synthia_label(root / "GT" / "LABELS" / f"{name}.png", label)
        ids.append(name)
    return ids


def write_cityscapes(
    root: Path,
    split: str,
    labels: dict[str, list[np.ndarray]],
    images: dict[str, list[np.ndarray]] | None = None,
) -> list[str]:
    """leftImg8bit/<split>/<city>/<city>_000000_0000NN_leftImg8bit.png and the gtFine
    labelIds, instanceIds and color PNGs beside each label; ids are "<city>/<name>"."""
    ids = []
    for city, city_labels in labels.items():
        city_images = _images(city_labels, None if images is None else images[city])
        for i, (label, image) in enumerate(zip(city_labels, city_images, strict=True)):
            name = f"{city}_000000_{i:06d}"
            write_rgb(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image)
            gt = root / "gtFine" / split / city
            write_gray_label(gt / f"{name}_gtFine_labelIds.png", label)
            write_gray_label(gt / f"{name}_gtFine_instanceIds.png", label)
            write_palette_label(gt / f"{name}_gtFine_color.png", label)
            ids.append(f"{city}/{name}")
    return sorted(ids)


def truncate(path: Path) -> None:
    """Cut a file to half its size (a truncated download)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
