"""The confusion matrix normalised, and drawn as an RGB heat map with PIL: tens of
milliseconds where a matplotlib figure takes seconds, so trials log it at their end without
delaying anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ripu.errors import RipuError
from ripu.io import atomic_path

if TYPE_CHECKING:
    import torch

CELL = 30  # pixels per matrix cell
LOW = np.array([247, 251, 255], dtype=np.float64)  # colour of 0 (matplotlib's "Blues" ends)
HIGH = np.array([8, 48, 107], dtype=np.float64)  # colour of the maximum
_NORMALIZE = ("true", "pred", "all", "none")


def normalize_confusion(conf: torch.Tensor | np.ndarray, normalize: str = "true") -> np.ndarray:
    """Normalise a confusion matrix: ``"true"`` rows (recall per class), ``"pred"`` columns
    (precision), ``"all"`` the total, ``"none"`` raw counts. Empty rows/columns give 0.

    Shape:
        ``(C, C)`` -> ``(C, C)`` float64
    """
    if normalize not in _NORMALIZE:
        raise RipuError(f"normalize must be one of {list(_NORMALIZE)}, got {normalize!r}")
    m = np.asarray(conf.cpu() if hasattr(conf, "cpu") else conf, dtype=np.float64)  # tensor
    if normalize == "none":
        return m
    denom = {"true": m.sum(1, keepdims=True), "pred": m.sum(0, keepdims=True),
             "all": np.array(m.sum())}[normalize]
    return np.divide(m, denom, out=np.zeros_like(m), where=denom > 0)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def cell_colours(m: np.ndarray, vmax: float) -> np.ndarray:
    """Linear blend from :data:`LOW` (0) to :data:`HIGH` (``vmax``, and above).

    Shape:
        ``(C, C)`` -> ``(C, C, 3)`` uint8
    """
    t = np.clip(m / vmax, 0.0, 1.0)[..., None]
    return np.rint(LOW + t * (HIGH - LOW)).astype(np.uint8)


def confusion_image(conf: torch.Tensor | np.ndarray, class_names: Sequence[str],
                    normalize: str = "true", title: str | None = None) -> np.ndarray:
    """Heat map of a confusion matrix (rows = ground truth, columns = prediction), non-zero
    cells annotated with their value, normalised by :func:`normalize_confusion`.

    Shape:
        conf ``(C, C)``; returns ``(H, W, 3)`` uint8
    """
    m = normalize_confusion(conf, normalize)
    n = m.shape[0]
    if m.shape != (n, n) or len(class_names) != n:
        raise RipuError(f"confusion_image: matrix of shape {m.shape} with {len(class_names)} "
                        "class names; expected a square (C, C) matrix and C names")
    tiny, small, big = _font(9), _font(11), _font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = int(max([probe.textlength(str(c), font=small) for c in class_names] + [10])) + 8
    top, left, bottom = 34, label_w + 18, label_w + 18
    width, height = left + n * CELL + 12, top + n * CELL + bottom
    image = Image.new("RGB", (width, height), (255, 255, 255))
    vmax = 1.0 if normalize != "none" else max(float(m.max()), 1.0)
    cells = cell_colours(m, vmax).repeat(CELL, 0).repeat(CELL, 1)
    image.paste(Image.fromarray(cells), (left, top))
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), title or f"confusion matrix (normalised: {normalize}); rows: ground "
              "truth, columns: prediction", fill=(0, 0, 0), font=big)
    fmt = "{:.0f}" if normalize == "none" else "{:.2f}"
    for (i, j), value in np.ndenumerate(m):
        if value > 0:
            draw.text((left + j * CELL + CELL // 2, top + i * CELL + CELL // 2),
                      fmt.format(value)[:5], anchor="mm", font=tiny,
                      fill=(255, 255, 255) if value > 0.5 * vmax else (0, 0, 0))
    names = Image.new("RGB", (label_w, n * CELL), (255, 255, 255))  # column labels, rotated
    name_draw = ImageDraw.Draw(names)
    for k, name in enumerate(class_names):
        draw.text((left - 6, top + k * CELL + CELL // 2), str(name), anchor="rm",
                  fill=(0, 0, 0), font=small)
        name_draw.text((label_w - 4, k * CELL + CELL // 2), str(name), anchor="rm",
                       fill=(0, 0, 0), font=small)
    image.paste(names.rotate(90, expand=True), (left, top + n * CELL + 4))
    return np.asarray(image)


def save_confusion_image(conf: torch.Tensor | np.ndarray, class_names: Sequence[str],
                         path: str | os.PathLike, normalize: str = "true") -> None:
    """Write :func:`confusion_image` to ``path`` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(confusion_image(conf, class_names, normalize)).save(tmp, format="PNG")
