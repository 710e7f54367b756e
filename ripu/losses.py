"""Training losses: CE helpers, local consistency, negative learning, focal loss.

Pure functions over tensors. Every loss returns a
scalar that stays connected to the autograd graph of its input, also in the degenerate
cases (no labelled pixel, no boundary pixel, empty mask) where it is 0, so a training
step can always call ``backward()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ripu.data.labels import IGNORE_INDEX
from ripu.errors import RipuError

__all__ = [
    "cross_entropy",
    "focal_loss",
    "local_consistency",
    "negative_learning",
    "semantic_boundary",
]

# 8-neighbour Laplacian: sum of the 8 neighbours minus 8 times the centre.
_LAPLACIAN_8 = ((1.0, 1.0, 1.0), (1.0, -8.0, 1.0), (1.0, 1.0, 1.0))


def _zero_like_loss(x: Tensor) -> Tensor:
    """A scalar 0 that depends on ``x``, so ``backward()`` works and gives zero gradients."""
    return x.sum() * 0.0


def _check_dense(probs: Tensor, name: str) -> None:
    if probs.dim() != 4:
        raise RipuError(f"{name} must have shape (N, C, H, W), got {tuple(probs.shape)}")


def _check_target(logits: Tensor, target: Tensor) -> None:
    _check_dense(logits, "logits")
    n, _, h, w = logits.shape
    if tuple(target.shape) != (n, h, w):
        raise RipuError(
            f"target must have shape (N, H, W) = {(n, h, w)} to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel-wise cross-entropy averaged over labelled pixels (docs/method.md section 2, CE).

    Unlike ``torch.nn.functional.cross_entropy``, which returns NaN when every pixel is
    ``ignore_index``, this returns a graph-connected 0 in that case.

    Shape:
        logits: (N, C, H, W) raw scores; target: (N, H, W) long, values in [0, C) or
        ``ignore_index``; returns a scalar.
    """
    _check_target(logits, target)
    if not bool((target != ignore_index).any()):
        return _zero_like_loss(logits)
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def semantic_boundary(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixels on a semantic boundary of a label map (docs/method.md section 2, L_LC).

    A pixel is on the boundary when the 8-neighbour Laplacian of the label map (label
    values as numbers, zero padding outside the image) is non-zero there and its own
    label is not ``ignore_index``. Zero padding makes border pixels with a non-zero label
    boundary pixels; a border pixel of label 0 is one only if a neighbour differs.

    Shape:
        labels: (N, H, W) integer; returns bool (N, H, W).
    """
    if labels.dim() != 3:
        raise RipuError(f"labels must have shape (N, H, W), got {tuple(labels.shape)}")
    kernel = torch.tensor(_LAPLACIAN_8, dtype=torch.float64, device=labels.device)
    # float64 keeps the integer arithmetic exact (|values| <= 8 * 255).
    lap = F.conv2d(labels[:, None].to(torch.float64), kernel[None, None], padding=1)[:, 0]
    return (lap != 0) & (labels != ignore_index)


def local_consistency(probs: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Local consistency loss L_LC on source probabilities (docs/method.md section 2).

    ``m`` is the 3x3 box mean of ``probs`` with replicate padding, ``d(i) = sum_c
    |p_c(i) - m_c(i)|``, and the loss is the mean of ``d`` over :func:`semantic_boundary`
    pixels of ``labels``. Gradients flow through both ``p`` and ``m``. With no boundary
    pixel the loss is a graph-connected 0.

    Shape:
        probs: (N, C, H, W) softmax probabilities; labels: (N, H, W) integer at the
        resolution of ``probs`` (resize with nearest first); returns a scalar.
    """
    _check_dense(probs, "probs")
    n, _, h, w = probs.shape
    if tuple(labels.shape) != (n, h, w):
        raise RipuError(
            f"labels must have shape (N, H, W) = {(n, h, w)} to match probs "
            f"{tuple(probs.shape)}, got {tuple(labels.shape)} (resize with nearest first)"
        )
    # 3x3 box mean as a depthwise convolution: the same values as avg_pool2d (to float
    # rounding), about 3x faster forward and backward on the CPU.
    box = torch.full((probs.shape[1], 1, 3, 3), 1.0 / 9.0, dtype=probs.dtype, device=probs.device)
    mean = F.conv2d(F.pad(probs, (1, 1, 1, 1), mode="replicate"), box, groups=probs.shape[1])
    dist = (probs - mean).abs().sum(dim=1)
    boundary = semantic_boundary(labels, ignore_index)
    count = int(boundary.sum())
    if count == 0:
        return _zero_like_loss(probs)
    return (dist * boundary).sum() / count


def negative_learning(probs: Tensor, threshold: float = 0.05) -> Tensor:
    """Negative learning loss L_NL on target probabilities (docs/method.md section 2).

    ``mask = (p < threshold)`` (no gradient through it) over every class and pixel;
    ``L_NL = -sum(mask * log(1 - p + 1e-6)) / sum(mask)``; an empty mask gives a
    graph-connected 0.

    Shape:
        probs: (N, C, H, W) softmax probabilities; returns a scalar.
    """
    _check_dense(probs, "probs")
    mask = (probs < threshold).detach()
    count = int(mask.sum())
    if count == 0:
        return _zero_like_loss(probs)
    return -(torch.log(1.0 - probs + 1e-6) * mask).sum() / count


def focal_loss(
    logits: Tensor, target: Tensor, gamma: float = 3.0, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Focal loss ``(1 - p_t)^gamma * CE`` averaged over labelled pixels (docs/method.md section 3).

    ``p_t`` is the softmax probability of the target class; ``gamma = 0`` gives
    :func:`cross_entropy`. No labelled pixel gives a graph-connected 0.

    Shape:
        logits: (N, C, H, W) raw scores; target: (N, H, W) long, values in [0, C) or
        ``ignore_index``; returns a scalar.
    """
    _check_target(logits, target)
    if gamma < 0:
        raise RipuError(f"focal loss gamma must be >= 0, got {gamma}")
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero_like_loss(logits)
    log_probs = F.log_softmax(logits, dim=1)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    log_pt = log_probs.gather(1, safe_target[:, None])[:, 0][valid]
    weight = (1.0 - log_pt.exp()).clamp_min(0.0).pow(gamma)
    return (weight * -log_pt).mean()
