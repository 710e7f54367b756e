"""Common base of the on-disk segmentation datasets: layout checks, decoding, mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from ripu.data.labels import class_names, map_labels
from ripu.data.transforms import SegTransform
from ripu.errors import DatasetError, RipuError

Item = tuple[Path, Path, str]
Transform = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise DatasetError saying what was expected."""
    if not path.is_dir():
        raise DatasetError(f"{what} not found: expected a directory at {path}")
    return path


def pair_items(
    dataset: str,
    images: Mapping[str, Path],
    labels: Mapping[str, Path],
    image_dir: Path,
    label_dir: Path,
) -> list[Item]:
    """Pair image and label files by id, checking the set is non-empty and complete.

    ``images`` and ``labels`` map an image id to its file.
    """
    if not images:
        raise DatasetError(f"{dataset}: no images found under {image_dir}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{dataset}: {len(images)} images under {image_dir} but {len(labels)} labels "
            f"under {label_dir}; expected one label per image"
        )
    for image_id in sorted(images):
        if image_id not in labels:
            raise DatasetError(
                f"{dataset}: image {images[image_id]} has no label (expected one in {label_dir})"
            )
    return [(images[i], labels[i], i) for i in sorted(images)]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last bytes of a PNG


def check_png_complete(path: Path) -> None:
    """Raise DatasetError unless ``path`` starts with the PNG signature and ends with the IEND
    chunk (a few trailing bytes tolerated). Reads 72 bytes: finds truncated copies of a
    dataset up front, without decoding it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
            f.seek(max(0, f.seek(0, 2) - 64))
            tail = f.read()
    except OSError as err:
        raise DatasetError(f"cannot read {path} ({err.strerror}); expected a PNG file") from None
    if head != PNG_SIGNATURE or PNG_END not in tail:
        raise DatasetError(f"{path} is truncated or not a PNG; expected a complete PNG file")


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 RGB.

    Shape:
        returns (H, W, 3) uint8
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot read image {path} (missing, truncated or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_index_png(path: Path) -> np.ndarray:
    """Decode an 8-bit single-channel or palette label PNG to its stored indices.

    PIL is used because OpenCV expands palette PNGs (GTA5 labels) into colours.

    Shape:
        returns (H, W) uint8
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            indices = np.array(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read label {path} (missing, truncated or not an image)") from err
    if mode not in ("L", "P"):
        raise DatasetError(f"label {path} has mode {mode}; expected a single-channel or palette PNG")
    return indices.astype(np.uint8, copy=False)


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and labels on disk; items are (image_path, label_path, image_id), sorted by id.

    Subclasses implement ``_decode_label`` (raw ids) and pass the id mapping and the set
    of ids their label files may contain.

    ``__getitem__(i)`` returns ``{"image": (3, H, W) float32 normalised, "label": (H, W)
    int64 class indices with 255 ignore, "id": str, "index": int}``.
    """

    name = "dataset"

    def __init__(
        self,
        items: Sequence[Item],
        mapping: Mapping[int, int],
        known_ids: Iterable[int],
        num_classes: int,
        transform: Transform | None = None,
    ) -> None:
        self.items = sorted(items, key=lambda item: item[2])
        self.mapping = dict(mapping)
        self.known_ids = tuple(sorted(set(known_ids)))
        self.num_classes = num_classes
        self.class_names = class_names(num_classes)
        self.transform = transform if transform is not None else SegTransform()
        self._decoded: dict[tuple, Any] | None = None  # decoded arrays, transformed items

    def keep_decoded(self) -> None:
        """Keep every decoded image and label in memory after its first read (read-only
        arrays), and, while the transform is deterministic (no crop, no flip), its output
        too (items return copies). For small datasets only: the embedded benchmark's 500
        images hold ~65 MB decoded and ~150 MB transformed, one GTA5 image alone ~6 MB."""
        if self._decoded is None:
            self._decoded = {}

    def _read(self, what: str, index: int, decode: Callable[[], np.ndarray]) -> np.ndarray:
        if self._decoded is None:
            return decode()
        key = (what, index)
        if key not in self._decoded:
            array = decode()
            array.setflags(write=False)
            self._decoded[key] = array
        return self._decoded[key]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"

    @property
    def ids(self) -> list[str]:
        return [item[2] for item in self.items]

    def check_files(self) -> None:
        """DatasetError naming the first image or label file that is not a complete PNG
        (cheap: no decoding; label ids are checked when a label is read)."""
        for image_path, label_path, _ in self.items:
            check_png_complete(image_path)
            check_png_complete(label_path)

    def _decode_label(self, path: Path) -> np.ndarray:
        """Raw label ids of one file. Shape: returns (H, W) integer."""
        return read_index_png(path)

    def read_image(self, index: int) -> np.ndarray:
        """The RGB image, untransformed. Shape: returns (H, W, 3) uint8."""
        return self._read("image", index, lambda: read_rgb(self.items[index][0]))

    def read_label(self, index: int) -> np.ndarray:
        """The label in class indices (255 ignore), untransformed. Shape: returns (H, W) uint8."""
        path = self.items[index][1]
        return self._read("label", index, lambda: map_labels(
            self._decode_label(path), self.mapping, self.known_ids, source=str(path)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image_t, label_t = self.sample(index)
        return {"image": image_t, "label": label_t, "id": self.items[index][2], "index": index}

    def sample(self, index: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and label of item ``index`` through the transform, its random augmentation
        drawn from ``generator``; a deterministic transform's output is computed once when
        decoded items are kept (:meth:`keep_decoded`), and copies are returned.

        Shape:
            returns image (3, H, W) float32, label (H, W) int64
        """
        if self._decoded is None or not self.transform.deterministic:
            return self._transformed(index, generator)
        key = ("item", index, repr(self.transform))
        if key not in self._decoded:
            self._decoded[key] = self._transformed(index, None)
        image_t, label_t = self._decoded[key]
        return image_t.clone(), label_t.clone()

    def _transformed(self, index: int, generator: torch.Generator | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and label of item ``index`` through the transform."""
        image_path, label_path, _ = self.items[index]
        try:
            return self.transform(self.read_image(index), self.read_label(index), generator)
        except RipuError as err:
            raise DatasetError(f"{image_path} / {label_path}: {err}") from err


def files_by_id(directory: Path, pattern: str, suffix: str = ".png") -> dict[str, Path]:
    """Files under ``directory`` matching ``pattern``, keyed by their relative path without
    ``suffix`` (for ``"*/*_leftImg8bit.png"`` with that suffix: ``"city/name"``)."""
    found: dict[str, Path] = {}
    for path in directory.glob(pattern):
        if path.is_file():
            key = path.relative_to(directory).as_posix()
            found[key[: -len(suffix)] if key.endswith(suffix) else key] = path
    return found


def check_split(dataset: str, split: str, valid: Sequence[str]) -> None:
    """Raise RipuError unless ``split`` is one of ``valid``."""
    if split not in valid:
        raise RipuError(f"{dataset}: unknown split {split!r}; expected one of {', '.join(valid)}")
