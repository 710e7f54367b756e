"""Turn a round file into files for annotators: PNG masks, overlay previews, a contact sheet.

- ``masks/<id>.png``: the train id where the pixel is labelled, 255 elsewhere (``/`` in ids
  becomes ``_``).
- ``overlays/<id>.png``: the image with labelled pixels highlighted, the rest darkened.
- ``contact_sheet.png``: a grid of small overlays captioned with ids and labelled shares
  (small regions stay visible: a thumbnail pixel is highlighted if any pixel under it is).

Every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ripu.acquisition.state import LabelState
from ripu.data.labels import IGNORE_INDEX
from ripu.data.transforms import denormalize
from ripu.errors import RipuError
from ripu.io import atomic_path

HIGHLIGHT = np.array([255, 214, 0], dtype=np.float32)  # labelled pixels blend towards this
DARKEN = 0.3  # brightness kept outside the labelled pixels
TILE = 256  # contact sheet thumbnail width
CAPTION = 34  # caption strip height under each thumbnail


def file_stem(image_id: str) -> str:
    """File name for an image id: ``/`` and ``\\`` become ``_``."""
    return image_id.replace("/", "_").replace("\\", "_")


def _index_by_id(dataset: Sequence) -> dict[str, int]:
    ids = (list(dataset.ids) if hasattr(dataset, "ids")
           else [str(dataset[i]["id"]) for i in range(len(dataset))])
    return {str(image_id): i for i, image_id in enumerate(ids)}


def _label(dataset: Sequence, index: int, shape: tuple[int, int]) -> np.ndarray:
    """Train-id label at the mask's size: ``read_label`` when its size matches, else the
    (transformed) item label. Shape: returns (H, W) uint8."""
    if hasattr(dataset, "read_label"):
        label = np.asarray(dataset.read_label(index))
        if label.shape == shape:
            return label.astype(np.uint8)
    label = dataset[index]["label"]
    label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if label.shape != shape:
        raise RipuError(f"image {index}: label size {label.shape}, expected the mask size "
                        f"{shape} of the round file")
    return label.astype(np.uint8)


def _image(dataset: Sequence, index: int, shape: tuple[int, int]) -> np.ndarray:
    """RGB image at the mask's size. Shape: returns (H, W, 3) uint8."""
    if hasattr(dataset, "read_image"):
        image = np.asarray(dataset.read_image(index))
        if image.shape[:2] == shape:
            return image
        return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return denormalize(dataset[index]["image"])


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labelled pixels blended towards a bright highlight, the others darkened.

    Shape:
        image: (H, W, 3) uint8; mask: (H, W) bool; returns (H, W, 3) uint8
    """
    out = image.astype(np.float32) * DARKEN
    out[mask] = 0.45 * image[mask].astype(np.float32) + 0.55 * HIGHLIGHT
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _thumbnail(image: np.ndarray, mask: np.ndarray, width: int) -> np.ndarray:
    """Overlay at about ``width`` pixels wide; a thumbnail pixel counts as labelled if any
    pixel under it is. Shape: returns (h, w, 3) uint8."""
    height, full_width = mask.shape
    if full_width <= width:
        scale = max(1, width // full_width)
        return np.repeat(np.repeat(overlay(image, mask), scale, 0), scale, 1)
    factor = math.ceil(full_width / width)
    h, w = math.ceil(height / factor), math.ceil(full_width / factor)
    padded = np.zeros((h * factor, w * factor), dtype=bool)
    padded[:height, :full_width] = mask
    small_mask = padded.reshape(h, factor, w, factor).any(axis=(1, 3))
    small_image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return overlay(small_image, small_mask)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def render_contact_sheet(tiles: list[tuple[str, float, np.ndarray]], title: str,
                         columns: int = 4) -> np.ndarray:
    """A grid of captioned thumbnails under a title line.

    Shape:
        tiles: (id, labelled fraction, (h, w, 3) uint8 thumbnail); returns (H, W, 3) uint8
    """
    if not tiles:
        raise RipuError("contact sheet: no images to show")
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_w = max(t[2].shape[1] for t in tiles) + 8
    cell_h = max(t[2].shape[0] for t in tiles) + CAPTION + 8
    header = 30
    sheet = Image.new("RGB", (columns * cell_w + 8, rows * cell_h + header + 8), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    big, small = _font(16), _font(13)
    draw.text((8, 7), _fit(draw, title, big, sheet.width - 16), fill=(240, 240, 240), font=big)
    for k, (image_id, fraction, thumb) in enumerate(tiles):
        x, y = 8 + (k % columns) * cell_w, header + (k // columns) * cell_h
        sheet.paste(Image.fromarray(thumb), (x, y))
        top = y + thumb.shape[0] + 3
        draw.text((x, top), _fit(draw, image_id, small, cell_w - 12), fill=(235, 235, 235),
                  font=small)
        draw.text((x, top + 15), f"{100 * fraction:.2f}% labelled", fill=(255, 214, 0),
                  font=small)
    return np.asarray(sheet)


def _sheet_title(state: LabelState) -> str:
    stats = state.round_stats[-1] if state.round_stats else {}
    strategy = f" - {stats['strategy']}" if "strategy" in stats else ""
    return (f"round {state.round_index}{strategy} - {len(state)} images - "
            f"{100 * state.labelled_fraction():.3f}% of pixels labelled")


def contact_sheet(state: LabelState, dataset: Sequence, path: str | os.PathLike, *,
                  max_images: int = 12, columns: int = 4) -> Path:
    """Write a contact sheet of up to ``max_images`` images (evenly spaced over the sorted
    ids of the state) to ``path``; returns ``path``."""
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise RipuError(f"max_images: expected a positive integer, got {max_images!r}")
    index = _index_by_id(dataset)
    ids = [i for i in state.ids if i in index]
    if not ids:
        raise RipuError("contact sheet: none of the state's images is in the dataset")
    if len(ids) <= max_images:
        picks = list(range(len(ids)))
    else:
        picks = sorted({round(k * (len(ids) - 1) / (max_images - 1)) if max_images > 1 else 0
                        for k in range(max_images)})
    tiles = []
    for k in picks:
        image_id = ids[k]
        mask = state.labelled[image_id]
        image = _image(dataset, index[image_id], mask.shape)
        fraction = state.labelled_count(image_id) / mask.size
        tiles.append((image_id, fraction, _thumbnail(image, mask, TILE)))
    path = Path(path)
    _write_png(path, render_contact_sheet(tiles, _sheet_title(state), columns))
    return path


def export_round(state_path: str | os.PathLike, dataset: Sequence, out_dir: str | os.PathLike,
                 *, previews: bool = True) -> dict[str, Any]:
    """Write ``masks/``, and with ``previews`` ``overlays/`` and ``contact_sheet.png``, for
    the round file ``state_path`` into ``out_dir``. Returns a summary (counts, paths)."""
    state = LabelState.load(state_path)
    index = _index_by_id(dataset)
    missing = [i for i in state.ids if i not in index]
    if missing:
        raise RipuError(f"{state_path}: {len(missing)} image ids are not in the dataset "
                        f"(first: {missing[0]!r}); expected the dataset the round was run on")
    stems: dict[str, str] = {}
    for image_id in state.ids:
        other = stems.setdefault(file_stem(image_id), image_id)
        if other != image_id:
            raise RipuError(f"image ids {other!r} and {image_id!r} map to the same file name "
                            f"{file_stem(image_id)!r}; expected distinct names")
    out_dir = Path(out_dir)
    written: dict[str, Any] = {"images": len(state), "masks": [], "overlays": []}
    for image_id in state.ids:
        mask = state.labelled[image_id]
        label = _label(dataset, index[image_id], mask.shape)
        stem = file_stem(image_id)
        path = out_dir / "masks" / f"{stem}.png"
        _write_png(path, np.where(mask, label, IGNORE_INDEX).astype(np.uint8))
        written["masks"].append(path)
        if previews:
            path = out_dir / "overlays" / f"{stem}.png"
            _write_png(path, overlay(_image(dataset, index[image_id], mask.shape), mask))
            written["overlays"].append(path)
    if previews and len(state):
        written["contact_sheet"] = contact_sheet(state, dataset, out_dir / "contact_sheet.png")
    return written
