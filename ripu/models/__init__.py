"""Segmentation networks: DeepLab-v2 / v3+ on torchvision ResNets, FCN-8s on VGG16 (the LSE
authors' network) and a small CPU network.

Every model maps ``(N, 3, H, W)`` images to logits at its output stride (callers upsample)
and offers ``backbone_parameters()``, ``head_parameters()`` and ``param_groups(lr)``.
"""

from __future__ import annotations

import os

import torch

from ripu.archs import ARCHS
from ripu.errors import RipuError
from ripu.models.common import RESNETS, SegmentationModel, load_pretrained

BACKBONES: tuple[str, ...] = tuple(RESNETS)


def build_model(
    arch: str,
    num_classes: int,
    *,
    backbone: str = "resnet101",
    pretrained: str | os.PathLike | None = None,
    freeze_bn: bool = True,
    bn_batch_stats: bool = False,
    seed: int = 0,
    width: float = 1.0,
) -> SegmentationModel:
    """Build a segmentation model.

    ``backbone`` picks the ResNet of the DeepLab models ("resnet50" or "resnet101"); the
    "small" and "vgg16_fcn8s" networks have their own and ignore it (it is still validated).
    ``width`` scales the channels of an arch whose traits allow it (:data:`ripu.archs.ARCHS`;
    FCN-8s). ``pretrained`` is a local file of ImageNet weights or a full-model checkpoint (see
    :func:`ripu.models.common.load_pretrained`); nothing is ever downloaded. ``freeze_bn``
    freezes every BatchNorm layer (statistics and affine parameters; with
    ``bn_batch_stats`` only the affine parameters, the layers normalising with batch
    statistics in training). Weights are
    initialised from ``seed`` without touching the global RNG. Raises RipuError for an
    unknown ``arch`` or ``backbone`` (listing the valid names) and for bad weights.
    """
    traits = ARCHS[arch]
    model_class = traits.model_class()
    if backbone not in RESNETS:
        raise RipuError(f"unknown backbone {backbone!r}; expected one of {sorted(RESNETS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if traits.resnet:
            model = model_class(num_classes, backbone=backbone)
        elif traits.width:
            model = model_class(num_classes, width=width)
        else:
            model = model_class(num_classes)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    if freeze_bn:
        model.freeze_batchnorm(batch_stats=bn_batch_stats)
    return model


__all__ = ["BACKBONES", "SegmentationModel", "build_model", "load_pretrained"]
