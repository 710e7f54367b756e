"""Names held by the torch-backed registries, importable without torch.

Configs check ``model.backbone``, ``data.source``, ``data.target`` and ``active.strategy``
(and trial names the strategy's mode) against these, so loading a params file imports no
torch. Each tuple lists exactly its registry's keys (tests/test_config.py checks it): add a
backbone, dataset or strategy to its registry and its name here. Trial kinds and
architectures need no copy: ``ripu.kinds`` and ``ripu.archs`` are torch-free.
"""

from __future__ import annotations

# ripu.models.BACKBONES.
BACKBONES: tuple[str, ...] = ("resnet101", "resnet50")
# torch.optim classes a config may name (ripu.engine.optim.OPTIMIZERS).
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
# Pixel normalisations (``data.normalize``; ripu.data.transforms applies them).
NORMALIZATIONS: tuple[str, ...] = ("imagenet", "caffe_bgr")
# ripu.data.DATASETS: readers of the datasets' on-disk layouts.
DATASETS: tuple[str, ...] = ("gta5", "synthia", "cityscapes")
# The readers with train and val splits: what a target can be.
TARGET_DATASETS: tuple[str, ...] = ("cityscapes",)
# ripu.acquisition.STRATEGIES: name -> mode (what a unit of budget is).
STRATEGY_MODES: dict[str, str] = {
    "ripu_region": "region", "ripu_point": "point", "random_region": "region",
    "random_point": "point", "entropy_region": "region", "impurity_region": "region",
    "full_image": "image",
    "oracle": "region",  # uses the ground truth: an upper bound, not a method
}
STRATEGIES: tuple[str, ...] = tuple(STRATEGY_MODES)
# The strategies that read the ground truth (an upper bound, not a method): people cannot
# label their rounds.
GROUND_TRUTH_STRATEGIES: tuple[str, ...] = ("oracle",)
