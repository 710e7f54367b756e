"""LSE self-training (docs/method.md section 3): pseudo-labels on scale-invariant examples."""

from ripu.selftrain.lse import (
    Box,
    ImageStats,
    Patch,
    PixelMaps,
    crop_and_upsample_image,
    image_stats,
    kept_union,
    normalize_entropy_per_class,
    pseudo_label,
    round_fraction,
    scale_invariant_patches,
    select_confident,
)
from ripu.selftrain.runner import (
    PatchDataset,
    PseudoLabelSet,
    build_pseudo_labels,
    full_pseudo_labels,
)

__all__ = [
    "Box",
    "ImageStats",
    "Patch",
    "PatchDataset",
    "PixelMaps",
    "PseudoLabelSet",
    "build_pseudo_labels",
    "crop_and_upsample_image",
    "full_pseudo_labels",
    "image_stats",
    "kept_union",
    "normalize_entropy_per_class",
    "pseudo_label",
    "round_fraction",
    "scale_invariant_patches",
    "select_confident",
]
