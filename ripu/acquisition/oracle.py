"""The ground-truth oracle: uses the ground truth, an upper bound, not a method.

It shows how much a perfect selector could gain over random regions on a benchmark (the
report's "selection headroom"): regions lying inside one ground-truth class, ranked by how
many of their pixels the current model gets wrong, under RIPU-RA's region size, rounds,
blocking and budget (:func:`ripu.acquisition.select.select_regions`).
"""

from __future__ import annotations

import torch

from ripu.acquisition.scores import (
    check_logits,
    first_argmax,
    pure_windows,
    softmax_classes,
    window_sum,
)
from ripu.data.labels import IGNORE_INDEX as IGNORE
from ripu.errors import RipuError

# Ties between equal wrong counts break at random (seeded): a draw in [0, TIE) never
# reorders two different counts. Windows that cross a class boundary or hold an ignore pixel
# score below every interior window (-1 + draw), so they are taken only when no interior
# window is left.
TIE = 0.5


def prediction(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class (first argmax of the softmax, as selection breaks ties).

    Shape:
        logits: (C, H, W); returns (H, W) integer
    """
    check_logits(logits)
    return first_argmax(softmax_classes(logits))


def wrong_pixels(logits: torch.Tensor, label: torch.Tensor,
                 pred: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels whose prediction (``pred``, default :func:`prediction` of ``logits``) differs
    from a non-ignore label.

    Shape:
        logits: (C, H, W); label: (H, W) integer; returns (H, W) bool
    """
    pred = prediction(logits) if pred is None else pred
    if not isinstance(label, torch.Tensor) or label.shape != logits.shape[1:]:
        raise RipuError(f"label: expected an (H, W) tensor of shape {tuple(logits.shape[1:])} "
                        f"like the logits, got {tuple(getattr(label, 'shape', ())) or label!r}")
    label = label.to(logits.device).long()
    return (pred.long() != label) & (label != IGNORE)


def interior(label: torch.Tensor, radius: int) -> torch.Tensor:
    """Labelled pixels whose clipped (2k+1)^2 window holds one ground-truth class and no
    ignore pixel. Shape: (H, W) -> (H, W) bool."""
    return pure_windows(label, radius) & (label != IGNORE)


def oracle_score(logits: torch.Tensor, label: torch.Tensor, radius: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Wrong pixels of each clipped (2k+1)^2 window inside one ground-truth class, plus a
    seeded draw in [0, ``TIE``); ``-1`` plus the draw for every other window.

    Shape:
        logits: (C, H, W); label: (H, W); returns (H, W) float32 on the logits' device
    """
    wrong = window_sum(wrong_pixels(logits, label).to(torch.int32), radius).float()
    label = label.to(logits.device)
    draw = TIE * torch.rand(tuple(label.shape), generator=generator).to(logits.device)
    return torch.where(interior(label, radius), wrong, torch.full_like(wrong, -1.0)) + draw
