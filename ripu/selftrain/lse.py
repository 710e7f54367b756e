"""LSE self-training: confident images, class thresholds, scale-invariant examples.

docs/method.md section 3. Every constant of the method is an argument here; the defaults
are the authors' values. All functions work on one image's tensors (or on per-image
summaries) and never touch files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ripu.data.labels import IGNORE_INDEX
from ripu.errors import RipuError

__all__ = [
    "RULES",
    "Box",
    "ImageStats",
    "Patch",
    "PixelMaps",
    "crop_and_upsample_image",
    "image_stats",
    "kept_count",
    "kept_union",
    "normalize_entropy_per_class",
    "pixel_entropy",
    "pixel_maps",
    "pseudo_label",
    "round_fraction",
    "scale_invariant_patches",
    "select_confident",
    "stats_from_maps",
]

# Keep rules of the confident images: name -> (divide by C, rounding). ``authors``:
# floor(N_c p / C) (LSE ``LSE.py``); ``authors_ceil``: ceil(N_c p / C), the same share of
# each class's images on a set too small for floor to keep any (160 images: N_c p / C < 1
# until p > 0.12); ``per_class``: floor(N_c p).
KEEP_RULES: dict[str, tuple[bool, str]] = {
    "authors": (True, "floor"), "authors_ceil": (True, "ceil"), "per_class": (False, "floor")}
RULES = tuple(KEEP_RULES)


def kept_count(n_c: int, p: float, num_classes: int, rule: str) -> int:
    """How many of the ``n_c`` images predicting a class ``rule`` keeps (at most ``n_c``);
    a 1e-9 slack absorbs float round-off in the product."""
    by_classes, rounding = KEEP_RULES[rule]
    x = n_c * p / (num_classes if by_classes else 1)
    n = math.floor(x + 1e-9) if rounding == "floor" else math.ceil(x - 1e-9)
    return min(n_c, n)


def _check_probs(probs: Tensor) -> None:
    if probs.dim() != 3:
        raise RipuError(f"probs must have shape (C, H, W), got {tuple(probs.shape)}")


def pixel_entropy(probs: Tensor) -> Tensor:
    """Pixel entropy ``-sum_c p_c log(p_c + 1e-6) / log(C)`` (docs/method.md section 1), >= 0.

    Shape:
        probs: (C, H, W) softmax probabilities; returns (H, W).
    """
    _check_probs(probs)
    num_classes = probs.shape[0]
    ent = -(probs * torch.log(probs + 1e-6)).sum(dim=0)
    if num_classes > 1:
        ent = ent / math.log(num_classes)
    return ent.clamp_min(0.0)


def normalize_entropy_per_class(entropy: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """Min-max normalise entropy separately among the pixels of each predicted class.

    docs/method.md section 3, step 1: within one image, pixel ``i`` predicted as ``c`` gets
    ``(H(i) - min_c) / (max_c - min_c)`` with min and max over the image's pixels
    predicted ``c``. A class whose entropy is constant in the image gets 0 (never NaN).

    Shape:
        entropy: (H, W) float; pred: (H, W) long in [0, num_classes); returns (H, W)
        float in [0, 1].
    """
    if entropy.dim() != 2 or entropy.shape != pred.shape:
        raise RipuError(
            f"entropy and pred must both have shape (H, W), got {tuple(entropy.shape)} "
            f"and {tuple(pred.shape)}"
        )
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise RipuError(f"pred values must lie in [0, {num_classes}), got "
                        f"[{int(pred.min())}, {int(pred.max())}]")
    flat = entropy.reshape(-1)
    idx = pred.reshape(-1).long()
    lo = torch.full((num_classes,), math.inf, dtype=flat.dtype, device=flat.device)
    hi = torch.full((num_classes,), -math.inf, dtype=flat.dtype, device=flat.device)
    lo = lo.scatter_reduce(0, idx, flat, reduce="amin")
    hi = hi.scatter_reduce(0, idx, flat, reduce="amax")
    span = (hi - lo)[idx]
    shifted = flat - lo[idx]
    positive = span > 0
    norm = torch.where(positive, shifted / torch.where(positive, span, 1.0), 0.0)
    return norm.clamp(0.0, 1.0).reshape(entropy.shape)


def round_fraction(r: int, base: float = 0.10, step: float = 0.05) -> float:
    """Fraction ``p_r = base + step * r`` of confident images in round ``r`` (docs/method.md section 3).

    Rounded to 12 decimals so that e.g. round 3 gives exactly 0.25, not 0.25000000000000006.
    """
    if r < 0:
        raise RipuError(f"LSE round index must be >= 0, got {r}")
    p = round(base + step * r, 12)
    if p < 0:
        raise RipuError(f"LSE fraction p_r = {base} + {step} * {r} = {p} must be >= 0")
    return p


class PixelMaps(NamedTuple):
    """Per-pixel maps of one prediction.

    Shape:
        pred: (H, W) long argmax; confidence: (H, W) max probability; norm_entropy:
        (H, W) entropy normalised per predicted class, in [0, 1].
    """

    pred: Tensor
    confidence: Tensor
    norm_entropy: Tensor


def pixel_maps(probs: Tensor) -> PixelMaps:
    """Prediction, confidence and per-class normalised entropy of one image.

    Shape:
        probs: (C, H, W) softmax probabilities; returns :class:`PixelMaps` of (H, W) maps.
    """
    _check_probs(probs)
    confidence, pred = probs.max(dim=0)
    norm = normalize_entropy_per_class(pixel_entropy(probs), pred, probs.shape[0])
    return PixelMaps(pred=pred, confidence=confidence, norm_entropy=norm)


@dataclass(frozen=True)
class ImageStats:
    """Per-class summary of one image's prediction (docs/method.md section 3, steps 2-3).

    Classes absent from the prediction have ``present`` False, ``pixel_count`` 0 and
    0.0 in both means. ``constant_entropy`` marks the present classes whose entropy is the
    same at all their pixels in this image (one pixel, or equal values): their min-max
    normalisation divides 0 by 0, which the authors' code leaves as NaN.

    Shape:
        present: (C,) bool; pixel_count: (C,) long; mean_confidence: (C,) float (mean
        max-probability of the class's pixels); mean_norm_entropy: (C,) float (mean
        normalised entropy of the class's pixels); constant_entropy: (C,) bool.
    """

    present: Tensor
    pixel_count: Tensor
    mean_confidence: Tensor
    mean_norm_entropy: Tensor
    constant_entropy: Tensor

    @property
    def num_classes(self) -> int:
        return int(self.present.shape[0])


def stats_from_maps(maps: PixelMaps, num_classes: int) -> ImageStats:
    """:class:`ImageStats` from an image's :class:`PixelMaps` (on the CPU).

    Shape:
        maps: (H, W) maps; returns per-class (C,) vectors.
    """
    idx = maps.pred.reshape(-1).long()
    count = torch.bincount(idx, minlength=num_classes)[:num_classes]
    conf_sum = torch.zeros(num_classes, dtype=torch.float64, device=idx.device)
    ent_sum = torch.zeros(num_classes, dtype=torch.float64, device=idx.device)
    conf_sum.index_add_(0, idx, maps.confidence.reshape(-1).to(torch.float64))
    ent_sum.index_add_(0, idx, maps.norm_entropy.reshape(-1).to(torch.float64))
    denom = count.clamp_min(1).to(torch.float64)
    # A class's normalised entropies are all 0 exactly when its entropy span is 0 (else the
    # pixel of highest entropy gets 1).
    ent_max = torch.zeros(num_classes, dtype=maps.norm_entropy.dtype, device=idx.device)
    ent_max = ent_max.scatter_reduce(0, idx, maps.norm_entropy.reshape(-1), reduce="amax")
    return ImageStats(
        present=(count > 0).cpu(),
        pixel_count=count.cpu(),
        mean_confidence=(conf_sum / denom).float().cpu(),
        mean_norm_entropy=(ent_sum / denom).float().cpu(),
        constant_entropy=((count > 0) & (ent_max == 0)).cpu(),
    )


def image_stats(probs: Tensor) -> ImageStats:
    """Per-class presence, mean max-probability and mean normalised entropy of one image.

    Shape:
        probs: (C, H, W) softmax probabilities; returns :class:`ImageStats` of (C,) vectors.
    """
    return stats_from_maps(pixel_maps(probs), probs.shape[0])


def select_confident(
    stats: Sequence[ImageStats], p: float, num_classes: int, rule: str = "authors"
) -> tuple[dict[int, list[int]], Tensor]:
    """Confident images per class and dynamic class thresholds (docs/method.md section 3).

    For each class ``c``, the ``N_c`` images whose prediction contains ``c`` are ranked by
    the mean max-probability of their ``c`` pixels (descending; ties: lower position in
    ``stats`` first). The top ``n_c`` are kept, ``n_c`` by ``rule`` (:func:`kept_count`:
    ``floor(N_c p / C)`` for ``authors``). ``tau_c`` is the mean
    normalised entropy of class-``c`` pixels in the first image *not* kept for ``c``
    (rank ``n_c``). When every image containing ``c`` is kept, or none contains ``c``,
    ``tau_c = 1.0``: every class-``c`` pixel except those of maximal normalised entropy
    (exactly 1) keeps its pseudo-label. When that first image's class-``c`` entropy is
    constant (``constant_entropy``), ``tau_c = inf`` and every class-``c`` pixel keeps its
    pseudo-label, as in the authors' code: their mean there is NaN and ``SE >= NaN`` ignores
    no pixel (LSE ``LSE.py``; docs/method.md, "LSE thresholds").

    Returns ``(kept, tau)``: ``kept[c]`` lists positions in ``stats`` in rank order (a key
    for every class, possibly empty); ``tau`` is a float (C,) tensor. The kept image set
    is the union over classes (:func:`kept_union`).
    """
    if rule not in RULES:
        raise RipuError(f"unknown LSE selection rule {rule!r}; expected one of {list(RULES)}")
    if p < 0:
        raise RipuError(f"LSE fraction p must be >= 0, got {p}")
    for i, s in enumerate(stats):
        if s.num_classes != num_classes:
            raise RipuError(
                f"image stats {i} has {s.num_classes} classes, expected {num_classes}"
            )
    kept: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    tau = torch.ones(num_classes, dtype=torch.float32)
    if not stats:
        return kept, tau
    present = torch.stack([s.present for s in stats])  # (N, C)
    conf = torch.stack([s.mean_confidence for s in stats]).to(torch.float64)
    ent = torch.stack([s.mean_norm_entropy for s in stats])
    for c in range(num_classes):
        members = torch.nonzero(present[:, c]).flatten()  # ascending positions
        n_c = int(members.numel())
        if n_c == 0:
            continue
        # Stable sort keeps ascending position order among equal confidences.
        order = torch.sort(conf[members, c], descending=True, stable=True).indices
        ranked = members[order]
        n_keep = kept_count(n_c, p, num_classes, rule)
        kept[c] = [int(i) for i in ranked[:n_keep]]
        if n_keep < n_c:
            first = int(ranked[n_keep])
            tau[c] = math.inf if stats[first].constant_entropy[c] else ent[first, c]
    return kept, tau


def kept_union(kept: dict[int, list[int]]) -> list[int]:
    """Sorted union over classes of the images kept by :func:`select_confident`."""
    return sorted({i for images in kept.values() for i in images})


def pseudo_label(
    pred: Tensor, norm_entropy: Tensor, tau: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Pseudo-label of one image with dynamic class thresholds (docs/method.md section 3, step 3).

    A pixel keeps ``pred`` where ``norm_entropy < tau[pred]``; elsewhere ``ignore_index``.

    Shape:
        pred: (H, W) long; norm_entropy: (H, W) float; tau: (C,) float; returns
        ``(label, keep)``: label (H, W) long, keep (H, W) bool.
    """
    if pred.shape != norm_entropy.shape or pred.dim() != 2:
        raise RipuError(
            f"pred and norm_entropy must both have shape (H, W), got {tuple(pred.shape)} "
            f"and {tuple(norm_entropy.shape)}"
        )
    tau = tau.to(device=norm_entropy.device, dtype=norm_entropy.dtype)
    keep = norm_entropy < tau[pred.long()]
    label = torch.where(keep, pred.long(), torch.full_like(pred.long(), ignore_index))
    return label, keep


class Box(NamedTuple):
    """A crop box in pixels of the full-size image: rows top..top+height-1, cols likewise."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class Patch:
    """One scale-invariant example: the crop box and its upsampled pseudo-label.

    Shape:
        label: (height * scale, width * scale) uint8, classes or the ignore index.
    """

    box: Box
    label: Tensor


def crop_and_upsample_image(image: Tensor, box: Box, scale: int) -> Tensor:
    """Crop ``box`` from a (K, H, W) map and upsample it by ``scale``.

    Bilinear with ``align_corners=True`` (docs/method.md section 3, step 4). Used for the
    image, the softmax and the keep mask alike.

    Shape:
        image: (K, H, W) (converted to float); returns (K, height * scale, width * scale).
    """
    if image.dim() != 3:
        raise RipuError(f"image must have shape (K, H, W), got {tuple(image.shape)}")
    top, left, height, width = box
    _, full_h, full_w = image.shape
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > full_h \
            or left + width > full_w:
        raise RipuError(f"crop box {tuple(box)} does not fit in an image of size "
                        f"{full_h}x{full_w}")
    crop = image[None, :, top:top + height, left:left + width]
    if not crop.is_floating_point():
        crop = crop.float()
    out = F.interpolate(crop, size=(height * scale, width * scale), mode="bilinear",
                        align_corners=True)
    return out[0]


def scale_invariant_patches(
    probs: Tensor,
    keep: Tensor,
    n_patches: int = 4,
    scale: int = 2,
    *,
    generator: torch.Generator,
    ignore_index: int = IGNORE_INDEX,
    mask_eps: float = 1e-6,
) -> list[Patch]:
    """Scale-invariant examples from one kept image (docs/method.md section 3, step 4).

    Each patch is a crop of height ``H // scale`` and width ``W // scale`` (half height
    and half width for the default ``scale=2``) at a position drawn uniformly from
    ``generator``. The crop of ``probs`` and of ``keep`` (as float) are upsampled by
    ``scale`` (bilinear, ``align_corners=True``); the label is the argmax of the
    upsampled probabilities where the upsampled keep mask is > ``mask_eps`` and
    ``ignore_index`` where it is <= ``mask_eps``, i.e. where it is 0 up to float
    round-off. Since bilinear interpolation is positive wherever an interpolation corner
    is kept, a patch pixel keeps its label when any of its (up to 4) source pixels was
    kept. ``mask_eps=0`` gives the literal "> 0" rule.

    The patch size is ``(H // scale * scale, W // scale * scale)``: the image size when
    ``H`` and ``W`` are multiples of ``scale``.

    Shape:
        probs: (C, H, W) softmax; keep: (H, W) bool; returns ``n_patches`` patches with
        uint8 labels of shape (H // scale * scale, W // scale * scale).
    """
    _check_probs(probs)
    num_classes, full_h, full_w = probs.shape
    if tuple(keep.shape) != (full_h, full_w):
        raise RipuError(f"keep must have shape {(full_h, full_w)} to match probs, got "
                        f"{tuple(keep.shape)}")
    if scale < 1 or full_h < scale or full_w < scale:
        raise RipuError(f"scale must be an integer in [1, min(H, W)], got {scale} for an "
                        f"image of size {full_h}x{full_w}")
    if n_patches < 0:
        raise RipuError(f"n_patches must be >= 0, got {n_patches}")
    if not (num_classes <= ignore_index <= 255):
        raise RipuError(f"ignore_index must lie in [{num_classes}, 255] to fit uint8 labels, "
                        f"got {ignore_index}")
    height, width = full_h // scale, full_w // scale
    tops = torch.randint(0, full_h - height + 1, (n_patches,), generator=generator)
    lefts = torch.randint(0, full_w - width + 1, (n_patches,), generator=generator)
    mask = keep.to(dtype=probs.dtype if probs.is_floating_point() else torch.float32)[None]
    patches = []
    for top, left in zip(tops.tolist(), lefts.tolist(), strict=True):
        box = Box(top, left, height, width)
        pred = crop_and_upsample_image(probs, box, scale).argmax(dim=0)
        kept = crop_and_upsample_image(mask, box, scale)[0] > mask_eps
        label = torch.where(kept, pred, torch.full_like(pred, ignore_index))
        patches.append(Patch(box=box, label=label.to(torch.uint8).cpu()))
    return patches
