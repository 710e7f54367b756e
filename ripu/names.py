"""Names held by the torch-backed registries, importable without torch.

Configs check ``model.arch``, ``model.backbone``, ``data.source``, ``data.target`` and
``active.strategy`` (and trial names the strategy's mode) against these, so loading a params file imports no torch. Each tuple
lists exactly its registry's keys (tests/test_config.py checks it): add a model, dataset or
strategy to its registry and its name here. Trial kinds need no copy: ``ripu.kinds`` is
torch-free.
"""

from __future__ import annotations

# ripu.models.MODELS (the first is the default).
ARCHS: tuple[str, ...] = ("small", "deeplabv2", "deeplabv3plus")
# ripu.models.BACKBONES.
BACKBONES: tuple[str, ...] = ("resnet101", "resnet50")
# ripu.data.DATASETS: readers of the datasets' on-disk layouts.
DATASETS: tuple[str, ...] = ("gta5", "synthia", "cityscapes")
# The readers with train and val splits: what a target can be.
TARGET_DATASETS: tuple[str, ...] = ("cityscapes",)
# ripu.acquisition.STRATEGIES: name -> mode (what a unit of budget is).
STRATEGY_MODES: dict[str, str] = {
    "ripu_region": "region", "ripu_point": "point", "random_region": "region",
    "random_point": "point", "entropy_region": "region", "impurity_region": "region",
    "full_image": "image",
}
STRATEGIES: tuple[str, ...] = tuple(STRATEGY_MODES)
