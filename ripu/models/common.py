"""Shared model machinery: the segmentation-model base class, frozen BatchNorm, parameter
groups, the dilated torchvision ResNet backbone and loading of pretrained weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ripu.archs import arch_of
from ripu.errors import RipuError

RESNETS: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}
"""Backbone name -> torchvision constructor (always called with ``weights=None``)."""

_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_LIST_LIMIT = 5  # names quoted in an error message before "..."


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
    stride: int = 1,
) -> nn.Sequential:
    """``kernel_size`` convolution (same padding, no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                  padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SegmentationModel(nn.Module):
    """Base of every segmentation network in :mod:`ripu.models`.

    Subclasses assign ``self.backbone`` (the feature extractor), the head modules with the
    final class-scoring layer as ``self.classifier``, and implement ``forward``, which
    returns logits at the network's output stride (callers upsample). Every trainable
    parameter outside ``self.backbone`` belongs to the head.

    Shape:
        forward: ``(N, 3, H, W) -> (N, num_classes, ceil(H / output_stride), ...)``
    """

    output_stride: int = 1
    backbone: nn.Module
    classifier: nn.Module

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise RipuError(f"num_classes must be a positive integer, got {num_classes}")
        self.num_classes = num_classes
        self.bn_frozen = False

    @property
    def arch(self) -> str:
        """The name this class is registered under in :data:`ripu.archs.ARCHS` ("" if none)."""
        return arch_of(type(self))

    # -- BatchNorm ---------------------------------------------------------------------------
    def batchnorms(self) -> Iterator[_BatchNorm]:
        """Every BatchNorm layer of the network (backbone and head)."""
        return (m for m in self.modules() if isinstance(m, _BatchNorm))

    def freeze_batchnorm(self, batch_stats: bool = False) -> SegmentationModel:
        """Freeze every BatchNorm layer's affine parameters (``requires_grad=False``, so
        :meth:`param_groups` leaves them out); gradients still flow through the layers.

        Without ``batch_stats`` the running statistics stay fixed too: the layers stay in
        eval mode even under ``model.train()`` (the RIPU authors' FrozenBatchNorm2d,
        BIT-DA/RIPU core/models/layers.py:5-23). With ``batch_stats`` the layers follow the
        model's mode, so training normalises with batch statistics and updates the running
        ones (LSE's DeepLab: affine ``requires_grad = False`` in MNaseerSubhani/LSE
        model/deeplab.py:63-76, the model in train mode in LSE.py:377). Returns ``self``.
        """
        self.bn_frozen = not batch_stats
        for bn in self.batchnorms():
            for p in bn.parameters(recurse=False):
                p.requires_grad_(False)
            if not batch_stats:
                bn.eval()
        return self

    @property
    def per_image(self) -> bool:
        """Whether each image's output depends on that image alone, in training too: no
        BatchNorm normalises with batch statistics. Then images of two batches may share
        one forward pass and give the same outputs as two passes."""
        return self.bn_frozen or next(self.batchnorms(), None) is None

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.bn_frozen:
            for bn in self.batchnorms():
                bn.eval()
        return self

    # -- parameters --------------------------------------------------------------------------
    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the feature extractor."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the feature extractor (ASPP, decoder, classifier)."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in in_backbone]

    def param_groups(self, lr: float, head_lr_mult: float = 10.0,
                     bias_lr_mult: float = 1.0) -> list[dict]:
        """Parameter groups for a torch optimiser: backbone at ``lr``, head at
        ``lr * head_lr_mult`` (docs/method.md section 2: 10x for the head); with ``bias_lr_mult``
        other than 1 the biases of each part form their own group at that multiple (the LSE
        authors' VGG path: biases at 2x, MNaseerSubhani/LSE model/__init__.py:21-28).

        Each group carries ``"lr"``, ``"initial_lr"`` (the lr at iteration 0) and
        ``"lr_mult"`` so a schedule can set ``group["lr"] = base_lr * decay *
        group["lr_mult"]``; and a ``"name"`` ("backbone", "head", and with split biases
        "backbone_bias", "head_bias"). Empty groups are left out.
        """
        groups = []
        for name, params, mult in (
            ("backbone", self.backbone_parameters(), 1.0),
            ("head", self.head_parameters(), float(head_lr_mult)),
        ):
            parts = [(name, params, mult)]
            if bias_lr_mult != 1.0:
                biases = {id(p) for n, p in self.named_parameters() if n.endswith(".bias")}
                parts = [(name, [p for p in params if id(p) not in biases], mult),
                         (f"{name}_bias", [p for p in params if id(p) in biases],
                          mult * float(bias_lr_mult))]
            groups += [{"params": ps, "lr": lr * m, "initial_lr": lr * m, "lr_mult": m,
                        "name": n} for n, ps, m in parts if ps]
        return groups

    def adapt_state(self, state: dict) -> tuple[nn.Module, dict, str] | None:
        """Weights in a foreign published layout as (module to load them into, the state in
        its keys, a description for errors); None when this model reads no foreign layout
        (the default) or ``state`` is not one."""
        return None

    def classifier_weight_names(self) -> list[str]:
        """State-dict keys of the class-scoring weights (dim 0 = num_classes): the weights
        under ``self.classifier``, which every subclass defines."""
        return [k for k in self.state_dict() if k.startswith("classifier.") and k.endswith("weight")]


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50/101 at output stride 8 (layer3 and layer4 dilated, strides
    replaced by dilation 2 and 4), without the average pool and fc layer. State-dict keys
    are torchvision's (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...).

    Shape:
        ``(N, 3, H, W) -> (low (N, 256, H/4, W/4), out (N, 2048, H/8, W/8))`` (ceil sizes)
    """

    low_channels = 256
    out_channels = 2048

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in RESNETS:
            raise RipuError(f"unknown backbone {name!r}; expected one of {sorted(RESNETS)}")
        self.name = name
        net = RESNETS[name](weights=None, replace_stride_with_dilation=[False, True, True])
        for stage in _RESNET_STAGES:
            self.add_module(stage, getattr(net, stage))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        out = self.layer4(self.layer3(self.layer2(low)))
        return low, out


def _quote(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return f"[{shown}{', ...' if len(names) > _LIST_LIMIT else ''}] ({len(names)})"


def _load_checked(
    module: nn.Module, state: dict, path: Path, expected: str
) -> None:
    """Load ``state`` into ``module`` after checking keys and shapes.

    BatchNorm ``num_batches_tracked`` buffers may be absent (torchvision's published
    weights have none). Any other missing or unexpected key, or a shape mismatch, raises
    RipuError naming ``path`` and ``expected``.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and (not torch.is_tensor(state[k]) or state[k].shape != v.shape)
    ]
    problems = [
        f"{label} {_quote(names)}"
        for label, names in (
            ("missing keys", missing), ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", mismatched),
        )
        if names
    ]
    if problems:
        raise RipuError(f"weights file {path} does not fit: {'; '.join(problems)}; "
                        f"expected {expected}")
    module.load_state_dict(state, strict=False)


def _check_classes(model: SegmentationModel, state: dict, path: Path) -> None:
    """RipuError when the checkpoint's classifier has another number of classes."""
    for key in model.classifier_weight_names():
        if key in state and torch.is_tensor(state[key]) \
                and state[key].shape[0] != model.num_classes:
            raise RipuError(f"checkpoint {path} was trained for {state[key].shape[0]} "
                            f"classes; the model has {model.num_classes}")


def check_weights_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; RipuError when no such file exists."""
    path = Path(path)
    if not path.is_file():
        raise RipuError(f"pretrained weights file {path} does not exist; expected ImageNet "
                        "weights (a torchvision state dict) or a ripu checkpoint")
    return path


def load_pretrained(model: SegmentationModel, path: str | os.PathLike) -> None:
    """Load weights from ``path`` into ``model``.

    ``path`` holds either a full-model checkpoint (a dict with key ``"model"`` holding
    ``model.state_dict()``, or that state dict itself), whose classifier must have
    ``model.num_classes`` outputs, or ImageNet ResNet weights in torchvision's state-dict
    format, loaded into ``model.backbone`` (``fc.*`` ignored), or a layout the model adapts
    (:meth:`SegmentationModel.adapt_state`: VGG16's and the LSE authors' for FCN8s). Read with
    ``torch.load(weights_only=True)``. Raises RipuError for a missing or unreadable file, a
    key or shape mismatch, or a checkpoint for another number of classes.
    """
    path = check_weights_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types
        raise RipuError(f"cannot read weights file {path} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); expected a "
                        "state dict saved with torch.save") from exc
    if not isinstance(obj, dict):
        raise RipuError(f"weights file {path} holds a {type(obj).__name__}; expected a dict "
                        "(a state dict or a checkpoint with key 'model')")
    state = obj.get("model", obj)
    if not isinstance(state, dict):
        raise RipuError(f"checkpoint {path}: 'model' is a {type(state).__name__}; "
                        "expected a state dict")
    adapted = model.adapt_state(state)
    if adapted is not None:
        module, state, expected = adapted
        if module is model:
            _check_classes(model, state, path)
        _load_checked(module, state, path, expected)
        return
    is_full_model = "model" in obj or any(k in state for k in model.classifier_weight_names())
    if is_full_model:
        _check_classes(model, state, path)
        _load_checked(model, state, path,
                      f"a {model.arch} checkpoint for {model.num_classes} classes")
        return
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, ResNetBackbone):
        raise RipuError(f"weights file {path} is not a {model.arch} checkpoint (no key "
                        "'model' and no classifier weights), and this model has no ImageNet "
                        "ResNet backbone to load it into")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    _load_checked(backbone, state, path, f"a torchvision {backbone.name} state dict")
