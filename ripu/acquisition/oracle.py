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


def wrong_pixels(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Pixels whose prediction (first argmax) differs from a non-ignore label.

    Shape:
        logits: (C, H, W); label: (H, W) integer; returns (H, W) bool
    """
    check_logits(logits)
    if not isinstance(label, torch.Tensor) or label.shape != logits.shape[1:]:
        raise RipuError(f"label: expected an (H, W) tensor of shape {tuple(logits.shape[1:])} "
                        f"like the logits, got {tuple(getattr(label, 'shape', ())) or label!r}")
    pred = first_argmax(softmax_classes(logits)).long()
    label = label.to(logits.device).long()
    return (pred != label) & (label != IGNORE)


def oracle_score(logits: torch.Tensor, label: torch.Tensor, radius: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Wrong pixels of each clipped (2k+1)^2 window inside one ground-truth class, plus a
    seeded draw in [0, ``TIE``); ``-1`` plus the draw for every other window.

    Shape:
        logits: (C, H, W); label: (H, W); returns (H, W) float32 on the logits' device
    """
    wrong = window_sum(wrong_pixels(logits, label).to(torch.int32), radius).float()
    label = label.to(logits.device)
    interior = pure_windows(label, radius) & (label != IGNORE)
    draw = TIE * torch.rand(tuple(label.shape), generator=generator).to(logits.device)
    return torch.where(interior, wrong, torch.full_like(wrong, -1.0)) + draw
