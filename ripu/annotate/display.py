"""The task image at a size people can paint on, and strokes mapped back to label pixels.

A task's image is the label state's pixels upscaled by an integer factor ``k`` (nearest
neighbour, :func:`scale`: about ``DISPLAY_WIDTH`` pixels wide, so a 3x3 region of a 256-wide
image is 12x12 screen pixels), with each region outlined just outside its pixels. Label
pixel ``(y, x)`` is the square ``[y k, (y + 1) k) x [x k, (x + 1) k)`` of the task image;
:func:`downscale` gives it to a stroke covering at least half of that square, so a mask
upscaled by :func:`upscale` maps back exactly (``downscale(upscale(m, k), k) == m``).
"""

from __future__ import annotations

import cv2
import numpy as np

DISPLAY_WIDTH = 1024


def scale(shape: tuple[int, int]) -> int:
    """The upscaling factor of a label state of ``shape`` (H, W): ``DISPLAY_WIDTH // W``,
    at least 1 (Cityscapes' 2048-wide labels are shown as they are)."""
    return max(1, DISPLAY_WIDTH // int(shape[1]))


def upscale(a: np.ndarray, k: int) -> np.ndarray:
    """Each pixel of ``a`` (H, W[, C]) as a k x k square: (k H, k W[, C]), same dtype."""
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def downscale(mask: np.ndarray, k: int) -> np.ndarray:
    """The label pixels a stroke ``mask`` bool (k H, k W) paints: bool (H, W), True where
    at least half of the pixel's k x k square is painted."""
    h, w = mask.shape[0] // k, mask.shape[1] // k
    covered = mask.reshape(h, k, w, k).sum(axis=(1, 3), dtype=np.int64)
    return 2 * covered >= k * k


def outline(selected: np.ndarray, k: int) -> np.ndarray:
    """A ring of ``max(1, k // 4)`` pixels just outside every region of ``selected``
    bool (H, W), on the upscaled image: bool (k H, k W), never on a selected pixel."""
    inside = upscale(selected.astype(np.uint8), k)
    width = max(1, k // 4)
    grown = cv2.dilate(inside, np.ones((2 * width + 1, 2 * width + 1), np.uint8))
    return (grown > 0) & (inside == 0)


def task_image(image: np.ndarray, selected: np.ndarray, colour: tuple[int, int, int]
               ) -> np.ndarray:
    """``image`` (H, W, 3) uint8 at the label state's size, upscaled by :func:`scale`, with
    the outline of ``selected`` bool (H, W) drawn in ``colour``: (k H, k W, 3) uint8."""
    k = scale(selected.shape)
    out = upscale(image, k).copy()
    out[outline(selected, k)] = colour
    return out
