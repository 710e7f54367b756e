"""RIPU acquisition scores: region impurity, prediction uncertainty (docs/method.md section 1).

Numerical contract (``naive.py`` follows the same one, so both give bit-identical scores):

- ``p = exp(x - max x) / sum exp(x - max x)`` in float32 (:func:`softmax_classes`); the
  pseudo-label is the first index of the maximum of ``p``.
- Pixel entropy ``-sum_c p_c log(p_c + 1e-6)`` in float32 (then ``/ log C`` for RA).
- Class counts over windows are exact integers; ``q_c = count / |N_k|`` and
  ``q_c * log(q_c + 1e-6)`` are float64 and summed in float64; the window sum of the float32
  pixel entropies is accumulated in float64. Impurity and uncertainty are rounded once to
  float32; the score is their float32 product.

Every sum over classes runs in class order in both implementations, so it agrees bit for bit
by construction, and each value depends only on its own pixel (never on the tensor's layout).
Window sums of entropies are accumulated in float64 from float32 values, which is exact in
practice (the values span far fewer than 29 binary orders of magnitude), so their order does
not matter: the fast path may organise the window arithmetic freely.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ripu.errors import RipuError

EPS = 1e-6
# Up to this radius the impurity is evaluated only where the window holds two or more classes
# (everywhere else it is the constant of a pure window); above it every pixel is evaluated.
SPARSE_MAX_RADIUS = 2
# Up to this radius integer window sums use shifted adds; above it cumulative sums.
SHIFT_MAX_RADIUS = 4
# Elements (classes x pixels) per band of rows in the softmax/entropy pass: 16 MiB of float32,
# small enough for the allocator to reuse (not map afresh), large enough for few, big ops.
BAND_ELEMENTS = 1 << 22
# Window slots (pixels x window area) per chunk of the sparse impurity pass.
CHUNK_SLOTS = 1 << 21


class RegionScores(NamedTuple):
    """Region-based acquisition maps, each float32 (H, W)."""

    score: torch.Tensor
    impurity: torch.Tensor
    uncertainty: torch.Tensor


def check_logits(logits: torch.Tensor) -> None:
    """Raise RipuError unless ``logits`` is a floating (C, H, W) tensor with C >= 2."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise RipuError(f"logits: expected a floating-point torch.Tensor, got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.dim() != 3 or logits.shape[0] < 2 or logits.shape[1] < 1 or logits.shape[2] < 1:
        raise RipuError(f"logits: expected shape (C, H, W) with C >= 2 classes, got "
                        f"{tuple(logits.shape)}")


def check_radius(radius: int) -> int:
    """Raise RipuError unless ``radius`` is a non-negative int; return it."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise RipuError(f"radius: expected a non-negative integer, got {radius!r}")
    return radius


def window_sizes(height: int, width: int, radius: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``|N_k(i)|``: in-image pixels of the (2k+1)^2 window centred on each pixel.

    Shape:
        returns (H, W) int64
    """
    def extent(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device)
        return (i + radius).clamp(max=n - 1) - (i - radius).clamp(min=0) + 1

    return extent(height)[:, None] * extent(width)[None, :]


def _separable(x: torch.Tensor, radius: int, combine) -> torch.Tensor:
    """Clipped window reduction, rows then columns, by in-place ``combine(acc, shifted)``
    with the map shifted by 1..radius each way (shifts that leave the image are skipped)."""
    for dim in (1, 0):
        n = x.shape[dim]
        out = x.clone()
        for d in range(1, min(radius, n - 1) + 1):
            combine(out.narrow(dim, d, n - d), x.narrow(dim, 0, n - d))
            combine(out.narrow(dim, 0, n - d), x.narrow(dim, d, n - d))
        x = out
    return x


def _cumsum_window_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Clipped window sum of an integer map by differences of int32 cumulative sums:
    ``out[i] = cs[min(i + r, n - 1)] - cs[i - r - 1]`` (0 when ``i - r - 1 < 0``)."""
    for dim in (1, 0):
        n = x.shape[dim]
        cs = x.cumsum(dim, dtype=torch.int32)
        out = torch.empty_like(cs)
        head = max(0, n - radius)
        out.narrow(dim, 0, head).copy_(cs.narrow(dim, n - head, head))
        out.narrow(dim, head, n - head).copy_(cs.narrow(dim, n - 1, 1).expand_as(
            out.narrow(dim, head, n - head)))
        if radius + 1 < n:
            out.narrow(dim, radius + 1, n - radius - 1).sub_(cs.narrow(dim, 0, n - radius - 1))
        x = out
    return x


def window_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum of ``x`` over the clipped (2k+1)^2 window of every pixel (zero outside the image).

    Integer maps are summed exactly; the caller picks a dtype that holds ``(2k+1)^2 * max``.
    Floating maps are summed with shifted adds in their own dtype (use float64 for sums that
    must not depend on order).

    Shape:
        x: (H, W); returns (H, W), same dtype
    """
    if x.is_floating_point() or radius <= SHIFT_MAX_RADIUS:
        return _separable(x, radius, lambda acc, shifted: acc.add_(shifted))
    return _cumsum_window_sum(x, radius).to(x.dtype)


def window_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over the clipped (2k+1)^2 window. Shape: x (H, W); returns (H, W)."""
    return _separable(x, radius, lambda acc, shifted: torch.maximum(acc, shifted, out=acc))


def window_min(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Minimum over the clipped (2k+1)^2 window. Shape: x (H, W); returns (H, W)."""
    return _separable(x, radius, lambda acc, shifted: torch.minimum(acc, shifted, out=acc))


def pure_windows(labels: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """True where the clipped (2k+1)^2 window holds a single value (any value, 255 too).

    Shape:
        labels: (H, W) integer; returns (H, W) bool
    """
    check_radius(radius)
    labels = labels.to(torch.int32)
    return window_max(labels, radius) == window_min(labels, radius)


def _sum_classes(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over dim 0 in class order (a fixed order: bit-reproducible). (C, ...) -> (...)."""
    out = x[0].clone() if out is None else out.copy_(x[0])
    for plane in x[1:]:
        out.add_(plane)
    return out


def softmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``exp(x_c - max x) / sum_c' exp(x_c' - max x)``, float32.

    The sum runs in class order and the division is a true division, so every value depends
    only on its own pixel's logits, never on the tensor's layout (``torch.softmax``'s do, by
    an ulp): band-wise and whole-image evaluation agree bit for bit.

    Shape:
        logits: (C, H, W); returns (C, H, W) float32
    """
    x = logits.float()
    probs = torch.exp(x - torch.amax(x, dim=0))
    return probs.div_(_sum_classes(probs))


def label_dtype(num_classes: int) -> torch.dtype:
    """Smallest dtype holding class indices and the weights of :func:`first_argmax`."""
    return torch.uint8 if num_classes <= 255 else torch.int64


def first_argmax(probs: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum over dim 0 (``torch.argmax``'s rule), by exact integer ops.

    ``C - max_c((p_c == max p) * (C - c))``: several times cheaper than ``argmax`` over the
    outer dimension on the CPU.

    Shape:
        probs: (C, ...) float; returns (...) of :func:`label_dtype`
    """
    num_classes = probs.shape[0]
    dtype = label_dtype(num_classes)
    weights = torch.arange(num_classes, 0, -1, dtype=dtype, device=probs.device)
    hits = (probs == torch.amax(probs, dim=0)).to(dtype)
    hits.mul_(weights.view(-1, *([1] * (probs.dim() - 1))))
    return torch.amax(hits, dim=0).neg_().add_(num_classes)


def entropy_and_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-normalised pixel entropy ``-sum_c p_c log(p_c + 1e-6)`` and the pseudo-label.

    Evaluated in bands of rows (``BAND_ELEMENTS``) so temporaries stay small enough to be
    reused by the allocator instead of being mapped afresh for each call.

    Shape:
        logits: (C, H, W); returns entropy (H, W) float32 (natural log) and labels (H, W)
        of :func:`label_dtype`
    """
    num_classes, height, width = logits.shape
    rows = max(1, BAND_ELEMENTS // (num_classes * width))
    entropy = torch.empty((height, width), dtype=torch.float32, device=logits.device)
    labels = torch.empty((height, width), dtype=label_dtype(num_classes), device=logits.device)
    for top in range(0, height, rows):
        probs = softmax_classes(logits[:, top:top + rows])
        labels[top:top + rows] = first_argmax(probs)
        terms = torch.add(probs, EPS).log_().mul_(probs)
        _sum_classes(terms, out=entropy[top:top + rows]).neg_()
    return entropy, labels


def _plogp(q: torch.Tensor) -> torch.Tensor:
    """``q * log(q + 1e-6)`` elementwise (float64 in, float64 out)."""
    return q * torch.log(q + EPS)


def _count_dtype(radius: int) -> torch.dtype:
    area = (2 * radius + 1) ** 2
    return torch.uint8 if area <= 255 else torch.int16 if area <= 32767 else torch.int32


def _present(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.reshape(-1), minlength=num_classes)[:num_classes] \
        .nonzero().squeeze(1).tolist()


def _mixed_plogp(labels: torch.Tensor, num_classes: int, radius: int, sizes: torch.Tensor,
                 where: torch.Tensor) -> torch.Tensor:
    """``sum_c q_c log(q_c + 1e-6)`` at the pixels ``where`` from their sorted neighbours.

    Each window's labels are gathered (outside the image: a sentinel ``C``) and sorted, so
    equal labels form runs in ascending class order; a run's length is its class count.
    Sentinel runs get ``q = 0``, whose term ``0 * log(1e-6) = -0.0`` leaves a sum unchanged.
    Pixels are processed in chunks of ``CHUNK_SLOTS`` window slots to bound memory.

    Shape:
        labels: (H, W); sizes: (H, W) int64; where: (M,) flat indices; returns (M,) float64
    """
    width = labels.shape[1]
    slots = (2 * radius + 1) ** 2
    padded = torch.nn.functional.pad(labels, (radius,) * 4, value=num_classes).view(-1)
    stride = width + 2 * radius
    steps = torch.arange(-radius, radius + 1, device=labels.device)
    offsets = (steps[:, None] * stride + steps[None, :]).view(-1)
    out = torch.empty(where.numel(), dtype=torch.float64, device=labels.device)
    chunk = max(1, CHUNK_SLOTS // slots)
    for lo in range(0, where.numel(), chunk):
        pixels = where[lo:lo + chunk]
        base = (pixels // width + radius) * stride + pixels % width + radius
        window = torch.sort(torch.take(padded, base[:, None] + offsets), dim=1).values
        starts = torch.ones(window.shape, dtype=torch.bool, device=labels.device)
        torch.ne(window[:, 1:], window[:, :-1], out=starts[:, 1:])
        # Every row starts a run, so the next start after a row's last run is the next row's.
        first = starts.view(-1).nonzero().squeeze(1)
        end = torch.full((1,), window.numel(), dtype=first.dtype, device=first.device)
        length = torch.diff(first, append=end)
        pixel = first // slots
        q = length.to(torch.float64) / sizes.view(-1)[pixels][pixel].to(torch.float64)
        q.masked_fill_(window.view(-1)[first] == num_classes, 0.0)
        acc = out[lo:lo + chunk].zero_()
        acc.index_add_(0, pixel, _plogp(q))
    return out


def class_plogp_sum(labels: torch.Tensor, num_classes: int, radius: int,
                    sizes: torch.Tensor) -> torch.Tensor:
    """``sum_c q_c log(q_c + 1e-6)`` over each clipped window (the negated raw impurity).

    ``q_c`` is the share of pixels of the window whose label is ``c``; the sum runs over the
    classes present, in class order, in float64. For small radii only pixels whose window
    holds two or more classes are evaluated (a pure window has ``q = 1`` for one class and 0
    for the rest, a constant); for larger ones every pixel, from per-class window counts.

    Shape:
        labels: (H, W) integer in [0, C); sizes: (H, W) int64 window sizes;
        returns (H, W) float64
    """
    height, width = labels.shape
    small = labels.to(label_dtype(num_classes + 1))
    if radius > SPARSE_MAX_RADIUS:
        # One class at a time, in class order: an absent class adds 0 * log(1e-6) = -0.0,
        # which leaves the sum unchanged, so this equals the sum over present classes while
        # holding one (H, W) count map at a time instead of all classes' counts.
        count_dtype, size = _count_dtype(radius), sizes.view(-1).to(torch.float64)
        acc = torch.zeros(height * width, dtype=torch.float64, device=labels.device)
        for c in _present(small, num_classes):
            count = window_sum((small == c).to(count_dtype), radius).view(-1)
            acc += _plogp(count.to(torch.float64) / size)
        return acc.view(height, width)
    mixed = window_max(small, radius) != window_min(small, radius)
    where = mixed.view(-1).nonzero().squeeze(1)
    pure = _plogp(torch.ones(1, dtype=torch.float64, device=labels.device))
    out = pure.expand(height * width).clone()
    if where.numel():
        out[where] = _mixed_plogp(small, num_classes, radius, sizes, where)
    return out.view(height, width)


def region_scores(logits: torch.Tensor, radius: int = 1) -> RegionScores:
    """RA scores: ``A = P * U`` with impurity ``P`` and uncertainty ``U`` (docs/method.md section 1).

    ``P(i) = -sum_c q_c log(q_c + 1e-6) / log C`` over the clipped window ``N_k(i)``;
    ``U(i)`` = mean over ``N_k(i)`` of ``H(j) = -sum_c p_c log(p_c + 1e-6) / log C``;
    ``|N_k(i)|`` counts only in-image pixels.

    Shape:
        logits: (C, H, W) at label resolution; returns RegionScores of (H, W) float32
        maps on the logits' device
    """
    check_logits(logits)
    check_radius(radius)
    num_classes, height, width = logits.shape
    log_c = math.log(num_classes)
    entropy, labels = entropy_and_labels(logits)
    pixel_entropy = entropy / log_c
    sizes = window_sizes(height, width, radius, logits.device)
    uncertainty = (window_sum(pixel_entropy.double(), radius) / sizes.double()).float()
    impurity = (class_plogp_sum(labels, num_classes, radius, sizes).neg_() / log_c).float()
    return RegionScores(impurity * uncertainty, impurity, uncertainty)


def point_scores(logits: torch.Tensor, radius: int = 32) -> torch.Tensor:
    """PA score ``H_raw(i) * P_raw(i)`` (docs/method.md section 1, point-based).

    Natural-log pixel entropy times natural-log impurity over the clipped (2k+1)^2 window;
    neither is divided by ``log C`` and the entropy is not averaged.

    Shape:
        logits: (C, H, W) at label resolution; returns (H, W) float32 on the logits' device
    """
    check_logits(logits)
    check_radius(radius)
    num_classes, height, width = logits.shape
    entropy, labels = entropy_and_labels(logits)
    sizes = window_sizes(height, width, radius, logits.device)
    impurity = class_plogp_sum(labels, num_classes, radius, sizes).neg_()
    return entropy * impurity.float()
