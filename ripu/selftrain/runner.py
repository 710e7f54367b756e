"""One LSE round over a target dataset: predict, select, pseudo-label, build patches.

docs/method.md section 3. The dataset is any indexable sequence of dicts ``{"image": float
(3, H, W) normalised, "label": long (H, W), "id": str, "index": int}`` (a torch Dataset
or a list). Two passes over the data keep memory small: the first computes per-image
class statistics only, the second revisits the kept images to build their pseudo-labels
and patches. Full softmaxes are never stored for more than one batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ripu.data.labels import IGNORE_INDEX
from ripu.errors import DatasetError
from ripu.inference import predict
from ripu.seeding import seeded_generator
from ripu.selftrain.lse import (
    ImageStats,
    Patch,
    PixelMaps,
    crop_and_upsample_image,
    kept_union,
    pixel_maps,
    pseudo_label,
    round_fraction,
    scale_invariant_patches,
    select_confident,
    stats_from_maps,
)

__all__ = ["PatchDataset", "PseudoLabelSet", "build_pseudo_labels", "full_pseudo_labels"]


@dataclass
class PseudoLabelSet:
    """The outcome of one LSE round.

    ``kept_images`` are positions in the target dataset (sorted); ``patches`` maps each of
    them to its scale-invariant examples (uint8 labels). ``coverage`` is the fraction of
    pixels of kept images that keep a pseudo-label; ``accuracy`` is the fraction of
    kept pseudo-labelled pixels with ground truth other than 255 whose pseudo-label equals
    it (None when no such pixel exists). Both are measured on the full-resolution
    pseudo-labels, before cropping.

    Shape:
        tau: (C,) float.
    """

    round_index: int
    fraction: float
    rule: str
    scale: int
    num_images: int
    kept_images: list[int]
    kept_ids: list[str]
    kept_per_class: dict[int, list[int]]
    tau: Tensor
    patches: dict[int, list[Patch]] = field(repr=False)
    coverage: float
    accuracy: float | None

    @property
    def num_patches(self) -> int:
        return sum(len(p) for p in self.patches.values())

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready summary: counts, per-class thresholds (None for an infinite one: every
        pixel of the class keeps its label), coverage and accuracy."""
        return {
            "round": self.round_index,
            "fraction": self.fraction,
            "rule": self.rule,
            "num_images": self.num_images,
            "kept_images": len(self.kept_images),
            "kept_per_class": [len(self.kept_per_class[c]) for c in sorted(self.kept_per_class)],
            "tau": [float(t) if math.isfinite(t) else None for t in self.tau],  # None: inf
            "num_patches": self.num_patches,
            "coverage": self.coverage,
            "accuracy": self.accuracy,
        }


def _predict(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    indices: Sequence[int],
    *,
    num_classes: int,
    device: str | torch.device,
    batch_size: int,
    progress: bool,
    desc: str,
) -> Iterator[tuple[int, dict[str, Any], Tensor]]:
    """Yield ``(position, item, probs (C, H, W) on device)`` for each index, in order.

    Softmax of :func:`ripu.inference.predict`'s logits at each label's size (batches of
    consecutive equally-sized items; eval mode, ``no_grad``, the model's mode restored).
    """
    for batch in predict(model, dataset, indices, device=device, batch_size=batch_size,
                         num_classes=num_classes, progress=progress, desc=desc):
        probs = batch.logits.softmax(dim=1)
        yield from zip(batch.positions, batch.items, probs, strict=True)


def _thresholds(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    fraction: float,
    *,
    num_classes: int,
    rule: str,
    device: str | torch.device,
    batch_size: int,
    progress: bool,
) -> tuple[dict[int, list[int]], Tensor]:
    """First pass: per-image statistics of every image, then confident images and tau."""
    if len(dataset) == 0:
        raise DatasetError("the target dataset is empty; LSE needs at least one image")
    stats: list[ImageStats] = []
    for _, _, probs in _predict(model, dataset, range(len(dataset)), num_classes=num_classes,
                                device=device, batch_size=batch_size, progress=progress,
                                desc="LSE stats"):
        stats.append(stats_from_maps(pixel_maps(probs), num_classes))
    return select_confident(stats, fraction, num_classes, rule)


def _label_pass(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    indices: Sequence[int],
    tau: Tensor,
    *,
    num_classes: int,
    device: str | torch.device,
    batch_size: int,
    progress: bool,
    desc: str,
) -> Iterator[tuple[int, dict[str, Any], Tensor, PixelMaps, Tensor, Tensor]]:
    """Second pass: yield ``(position, item, probs, maps, label, keep)`` per index."""
    for pos, item, probs in _predict(model, dataset, indices, num_classes=num_classes,
                                     device=device, batch_size=batch_size, progress=progress,
                                     desc=desc):
        maps = pixel_maps(probs)
        label, keep = pseudo_label(maps.pred, maps.norm_entropy, tau, IGNORE_INDEX)
        yield pos, item, probs, maps, label, keep


def _patch_generator(seed: int, round_index: int, position: int) -> torch.Generator:
    """A generator for one image's crops, independent of processing order."""
    return seeded_generator(seed, round_index, position, bits=32)


def build_pseudo_labels(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    round_index: int,
    *,
    num_classes: int,
    p_base: float = 0.10,
    p_step: float = 0.05,
    rule: str = "authors",
    n_patches: int = 4,
    scale: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    progress: bool = True,
) -> PseudoLabelSet:
    """Run one LSE round (docs/method.md section 3, steps 1-4) over a target dataset.

    Predicts every image, keeps the confident images with fraction
    ``p_r = p_base + p_step * round_index`` under ``rule``, pseudo-labels them with the
    dynamic class thresholds and draws ``n_patches`` crops per kept image. Crop positions
    come from a generator seeded by ``(seed, round_index, position)``, so the result is
    deterministic and independent of ``batch_size``. The model must already be on
    ``device``. Images and labels must have the same size, since crop boxes are shared.
    """
    fraction = round_fraction(round_index, p_base, p_step)
    kept, tau = _thresholds(model, dataset, fraction, num_classes=num_classes, rule=rule,
                            device=device, batch_size=batch_size, progress=progress)
    images = kept_union(kept)
    patches: dict[int, list[Patch]] = {}
    ids: list[str] = []
    kept_pixels = total_pixels = correct = judged = 0
    for pos, item, probs, _, label, keep in _label_pass(
            model, dataset, images, tau, num_classes=num_classes, device=device,
            batch_size=batch_size, progress=progress, desc="LSE patches"):
        if tuple(item["image"].shape[-2:]) != tuple(label.shape):
            raise DatasetError(
                f"target image {item['id']!r} is {tuple(item['image'].shape[-2:])} but its label "
                f"is {tuple(label.shape)}; LSE patches need images and labels of the same size")
        ids.append(str(item["id"]))
        kept_pixels += int(keep.sum())
        total_pixels += keep.numel()
        gt = item.get("label")
        if gt is not None:
            gt = gt.to(label.device)
            judged_mask = keep & (gt != IGNORE_INDEX)
            judged += int(judged_mask.sum())
            correct += int((judged_mask & (label == gt)).sum())
        patches[pos] = scale_invariant_patches(
            probs, keep, n_patches, scale, generator=_patch_generator(seed, round_index, pos),
            ignore_index=IGNORE_INDEX)
    return PseudoLabelSet(
        round_index=round_index,
        fraction=fraction,
        rule=rule,
        scale=scale,
        num_images=len(dataset),
        kept_images=images,
        kept_ids=ids,
        kept_per_class=kept,
        tau=tau,
        patches=patches,
        coverage=kept_pixels / total_pixels if total_pixels else 0.0,
        accuracy=correct / judged if judged else None,
    )


def full_pseudo_labels(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    round_index: int,
    *,
    num_classes: int,
    p_base: float = 0.10,
    p_step: float = 0.05,
    rule: str = "authors",
    only_kept: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Full-resolution LSE pseudo-label maps, keyed by image id (docs/method.md section 3).

    Thresholds ``tau`` come from the confident-image selection of round ``round_index``
    exactly as in :func:`build_pseudo_labels`; each image's map is its prediction where
    the normalised entropy is below ``tau`` of the predicted class, 255 elsewhere. Every
    image gets a map, or only the confident ones with ``only_kept=True``. Used by the
    RIPU+LSE hybrid to supervise target pixels that were not actively labelled.

    Shape:
        returns ``{id: uint8 (H, W)}`` at label resolution, on the CPU.
    """
    fraction = round_fraction(round_index, p_base, p_step)
    kept, tau = _thresholds(model, dataset, fraction, num_classes=num_classes, rule=rule,
                            device=device, batch_size=batch_size, progress=progress)
    indices = kept_union(kept) if only_kept else range(len(dataset))
    maps: dict[str, Tensor] = {}
    for _, item, _, _, label, _ in _label_pass(
            model, dataset, indices, tau, num_classes=num_classes, device=device,
            batch_size=batch_size, progress=progress, desc="LSE pseudo-labels"):
        maps[str(item["id"])] = label.to(torch.uint8).cpu()
    return maps


class PatchDataset(Dataset):
    """Scale-invariant training examples of one LSE round (docs/method.md section 3, step 5).

    Item ``k`` is ``{"image": float (3, H', W'), "label": long (H', W'), "id": str,
    "index": int}``: the crop of the target image upsampled by the round's scale
    (bilinear, ``align_corners=True``) and its pseudo-label; ``id`` and ``index`` are the
    source image's. ``H' = H`` and ``W' = W`` when the image size is a multiple of the
    scale. Items are ordered by image position, then patch.
    """

    def __init__(self, target_dataset: Sequence[dict[str, Any]], pseudo_set: PseudoLabelSet):
        self.target = target_dataset
        self.scale = pseudo_set.scale
        self.items: list[tuple[int, Patch]] = [
            (pos, patch) for pos in sorted(pseudo_set.patches)
            for patch in pseudo_set.patches[pos]
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, Any]:
        pos, patch = self.items[k]
        item = self.target[pos]
        image = item["image"]
        _, height, width = image.shape
        box = patch.box
        if box.top + box.height > height or box.left + box.width > width:
            raise DatasetError(f"target image {item['id']!r} is {height}x{width}, smaller "
                               f"than the pseudo-label crop {tuple(box)}; was the dataset "
                               "changed since the pseudo-labels were built?")
        return {
            "image": crop_and_upsample_image(image, box, self.scale),
            "label": patch.label.long(),
            "id": item["id"],
            "index": item["index"],
        }
