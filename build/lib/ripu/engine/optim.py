"""The optimiser a config names (``optim.name``), over the model's parameter groups.

:data:`OPTIMIZERS` is data: each name's torch class and which ``optim`` keys it reads. SGD
is the RIPU authors' (docs/method.md section 2); Adam with betas is the LSE authors' VGG16-FCN8s
path (MNaseerSubhani/LSE model/__init__.py:21-28).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ripu.config import OptimConfig
from ripu.models.common import SegmentationModel

OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], Callable[[OptimConfig], dict[str, Any]]]]
OPTIMIZERS = {
    "sgd": (torch.optim.SGD,
            lambda o: {"momentum": o.momentum, "weight_decay": o.weight_decay}),
    "adam": (torch.optim.Adam,
             lambda o: {"betas": tuple(o.betas), "weight_decay": o.weight_decay}),
}
"""``optim.name`` -> (torch optimiser class, its keyword arguments from the config)."""


def build_optimizer(model: SegmentationModel, o: OptimConfig) -> torch.optim.Optimizer:
    """``o.name``'s optimiser over ``model.param_groups(o.lr, o.head_lr_mult,
    o.bias_lr_mult)`` (every group's lr is ``o.lr`` times its ``lr_mult``)."""
    cls, kwargs = OPTIMIZERS[o.name]
    groups = model.param_groups(o.lr, o.head_lr_mult, o.bias_lr_mult)
    return cls(groups, lr=o.lr, **kwargs(o))
