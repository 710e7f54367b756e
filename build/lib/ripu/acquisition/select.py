"""Greedy non-overlapping selection over a score map (docs/method.md section 1).

The greedy loop "take the unblocked pixel with the highest score, label its window, block a
larger window, repeat" equals one pass over the pixels in descending score order (ties: lower
flat index first) that skips blocked pixels. Each accepted centre blocks at most ``B`` pixels
(``B`` = area of the block window), so the first ``n * B`` unblocked pixels of that order
always contain the ``n`` centres: only those are sorted, found with one k-th value threshold.
The scan itself runs on the host over that short candidate list (a bool array and one slice
write per accepted centre); masks are built on the score's device in one vectorised write.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ripu.acquisition.scores import check_radius
from ripu.errors import RipuError


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise RipuError(f"{name}: expected a non-negative integer, got {n!r}")
    return n


def _check_inputs(score: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
    """Validate the score map; return the input blocked mask on its device (or zeros)."""
    if not isinstance(score, torch.Tensor) or not score.is_floating_point() or score.dim() != 2:
        raise RipuError(f"score: expected a floating-point (H, W) tensor, got "
                        f"{getattr(score, 'dtype', type(score).__name__)} "
                        f"{tuple(getattr(score, 'shape', ()))}")
    if blocked is None:
        return torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    if not isinstance(blocked, torch.Tensor) or blocked.dtype != torch.bool:
        raise RipuError(f"blocked: expected a bool torch.Tensor, got "
                        f"{getattr(blocked, 'dtype', type(blocked).__name__)}")
    if blocked.shape != score.shape:
        raise RipuError(f"blocked: expected shape {tuple(score.shape)} like the score, got "
                        f"{tuple(blocked.shape)}")
    return blocked.to(score.device)


def window_mask(centres: torch.Tensor, height: int, width: int, radius: int) -> torch.Tensor:
    """Union of the clipped (2r+1)^2 windows around flat pixel indices ``centres``.

    Clamping an out-of-image offset lands on the image edge, which is inside the clipped
    window, so clamped indices mark exactly the clipped windows.

    Shape:
        centres: (n,) int64 flat indices; returns (H, W) bool on the centres' device
    """
    mask = torch.zeros(height * width, dtype=torch.bool, device=centres.device)
    if centres.numel():
        offsets = torch.arange(-radius, radius + 1, device=centres.device)
        ys = (centres // width)[:, None, None] + offsets[None, :, None]
        xs = (centres % width)[:, None, None] + offsets[None, None, :]
        flat = ys.clamp(0, height - 1) * width + xs.clamp(0, width - 1)
        mask[flat.reshape(-1)] = True
    return mask.view(height, width)


def candidate_order(score: torch.Tensor, blocked: torch.Tensor, limit: int) -> torch.Tensor:
    """Flat indices of the first ``>= limit`` unblocked pixels in greedy visiting order.

    Order: descending score, ties by lower flat index. All unblocked pixels whose score is
    at least the ``limit``-th largest are returned (so ties at the threshold are complete).

    Shape:
        score, blocked: (H, W); returns (m,) int64 on the score's device, m >= min(limit, free)
    """
    flat = score.reshape(-1)
    free = ~blocked.reshape(-1)
    n_free = int(free.sum())
    if limit >= n_free:
        candidates = free.nonzero().squeeze(1)
    else:
        masked = flat.masked_fill(~free, -math.inf)
        threshold = -torch.kthvalue(-masked, limit).values
        candidates = (masked >= threshold).nonzero().squeeze(1)
    order = torch.sort(-flat[candidates], stable=True).indices
    return candidates[order]


def _scan(order: list[int], height: int, width: int, n: int, block_radius: int) -> list[int]:
    """Greedy pass over candidates in visiting order; returns accepted flat indices."""
    taken = np.zeros((height, width), dtype=bool)
    accepted: list[int] = []
    r = block_radius
    for index in order:
        y, x = divmod(index, width)
        if taken[y, x]:
            continue
        accepted.append(index)
        if len(accepted) == n:
            break
        taken[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = True
    return accepted


def greedy_centres(score: torch.Tensor, n: int, block_radius: int,
                   blocked: torch.Tensor | None = None) -> list[int]:
    """Flat indices of up to ``n`` greedy centres, in the order they are chosen.

    Visits pixels by descending score (ties: lower flat index), skips blocked ones, and
    blocks the clipped ``(2 * block_radius + 1)^2`` window around each accepted centre.

    Shape:
        score: (H, W) float, finite; blocked: (H, W) bool or None
    """
    _check_count(n, "n")
    check_radius(block_radius)
    blocked_in = _check_inputs(score, blocked)
    if not bool(torch.isfinite(score).all()):
        raise RipuError("score: expected finite values, got NaN or infinity")
    if n == 0:
        return []
    height, width = score.shape
    order = candidate_order(score, blocked_in, n * (2 * block_radius + 1) ** 2).tolist()
    return _scan(order, height, width, n, block_radius)


def greedy_select(score: torch.Tensor, n: int, label_radius: int, block_radius: int,
                  blocked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick up to ``n`` centres greedily; label ``N_label`` and block ``N_block`` around each.

    Pixels blocked on input are never chosen as centres; ``blocked`` is not modified. If
    fewer than ``n`` centres can be placed, all possible ones are.

    Shape:
        score: (H, W) float; blocked: (H, W) bool or None;
        returns (selected, blocked) bool (H, W) on the score's device
    """
    check_radius(label_radius)
    centres = greedy_centres(score, n, block_radius, blocked)
    blocked_in = _check_inputs(score, blocked)
    height, width = score.shape
    index = torch.tensor(centres, dtype=torch.int64, device=score.device)
    selected = window_mask(index, height, width, label_radius)
    return selected, blocked_in | window_mask(index, height, width, block_radius)


def select_regions(score: torch.Tensor, n_regions: int, radius: int = 1,
                   blocked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RA selection: label the (2k+1)^2 window of each chosen pixel, block its (4k+1)^2 window.

    Shape:
        score: (H, W); blocked: (H, W) bool or None; returns (selected, blocked) bool (H, W)
    """
    _check_count(n_regions, "n_regions")
    check_radius(radius)
    return greedy_select(score, n_regions, radius, 2 * radius, blocked)


def select_points(score: torch.Tensor, n_points: int, radius: int = 32,
                  blocked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PA selection: label each chosen pixel only, block its (2k+1)^2 window ``N_k``.

    Shape:
        score: (H, W); blocked: (H, W) bool or None; returns (selected, blocked) bool (H, W)
    """
    _check_count(n_points, "n_points")
    check_radius(radius)
    return greedy_select(score, n_points, 0, radius, blocked)
