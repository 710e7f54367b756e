"""Model and device from a :class:`~ripu.config.Config` (no folder names here); the datasets
are :func:`ripu.data.build.build_datasets` (re-exported here for older imports)."""

from __future__ import annotations

from pathlib import Path

import torch

from ripu.config import Config
from ripu.data.build import build_datasets  # noqa: F401 (re-exported)
from ripu.errors import RipuError
from ripu.models import build_model


def device_name(name: str) -> torch.device | None:
    """The device ``name`` spells (None for ``auto``), whether or not this machine has it;
    RipuError for a name that is no device."""
    if name == "auto":
        return None
    try:
        return torch.device(name)
    except RuntimeError:
        raise RipuError(f"train.device: unknown device {name!r}, expected auto, cpu, cuda "
                        f"or cuda:N") from None


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA device is a RipuError."""
    device = device_name(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RipuError(f"train.device: {name} requested but CUDA is not available")
    return device


def build_model_from(cfg: Config, device: torch.device) -> torch.nn.Module:
    m = cfg.model
    pretrained = Path(m.pretrained) if m.pretrained else None
    return build_model(m.arch, cfg.data.num_classes, backbone=m.backbone, pretrained=pretrained,
                       freeze_bn=m.freeze_bn, bn_batch_stats=m.bn_batch_stats,
                       seed=cfg.seed, width=m.width).to(device)
