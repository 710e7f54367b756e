"""Segmentation architectures, each registered once: its name, where its class is defined
and its traits, as data (torch-free).

A config names an architecture (``model.arch``); configs, starts, warm-ups and the report
read its traits from here without importing torch, and :func:`ripu.models.build_model`
imports its class from its location when one is built (as mmseg's registry ``locations``).
A model class knows its name and traits from its entry
(:attr:`ripu.models.common.SegmentationModel.arch`). Add an architecture: write its
:class:`~ripu.models.common.SegmentationModel` subclass under ``ripu/models`` and register
it below.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ripu.registry import Registry, load


class Arch(NamedTuple):
    """One architecture: its class's ``location`` (``"package.module:Class"``, imported by
    :meth:`model_class` only) and its traits.

    ``resnet``: ``model.backbone`` picks its torchvision ResNet (its class takes
    ``backbone=``). ``imagenet``: it starts from ImageNet weights (``model.pretrained``).
    ``width``: ``model.width`` scales its channels (its class takes ``width=``).
    """

    location: str
    resnet: bool = False
    imagenet: bool = False
    width: bool = False

    def model_class(self) -> Any:
        """The architecture's class (imports its module, and so torch)."""
        return load(self.location)


# The first is the default (``model.arch``).
ARCHS: Registry[Arch] = Registry("model arch", {
    "small": Arch("ripu.models.small:SmallSegNet"),
    "deeplabv2": Arch("ripu.models.deeplabv2:DeepLabV2", resnet=True, imagenet=True),
    "deeplabv3plus": Arch("ripu.models.deeplabv3plus:DeepLabV3Plus", resnet=True,
                          imagenet=True),
    "vgg16_fcn8s": Arch("ripu.models.fcn8s:FCN8s", imagenet=True, width=True),
})


def arch_of(model_class: type) -> str:
    """The name ``model_class`` is registered under ("" when none)."""
    location = f"{model_class.__module__}:{model_class.__qualname__}"
    return next((name for name, a in ARCHS.items() if a.location == location), "")
