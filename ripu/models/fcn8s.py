"""FCN-8s on VGG16, as the LSE authors run it (MNaseerSubhani/LSE model/fcn8s.py).

The structure is theirs line for line: 100-pixel padding of the first convolution (:12),
ceil-mode max pools (:16-50), fc6 / fc7 as 7x7 and 1x1 convolutions with ReLU and
Dropout2d (:52-60), 1x1 score layers on fc7, pool4 and pool3 (:62-64), bilinear-initialised
transposed convolutions x2, x2, x8 without bias (:66-71, :87-100), the skips scaled by 0.01
(pool4) and 0.0001 (pool3) before scoring (:139, :147) and the crops at offsets 5, 9 and 31
(:140, :148-150, :156). No BatchNorm. Deliberate differences: the transposed convolutions'
weights are frozen (``requires_grad=False``; the authors keep them out of the optimiser,
:178-181, which is the same in training), and without loaded weights the VGG layers keep
PyTorch's default initialisation instead of zeros (:77-80: their network always starts from
loaded weights; zeros everywhere would not train). The score layers start at zero, as theirs.

``width`` multiplies every VGG channel count (1.0: VGG16); smaller widths keep the structure
for fast tests. Weights load from torchvision's VGG16 state dict (fc6 / fc7 reshaped to
convolutions) or from a state dict in the authors' key layout (:class:`FCN8s.adapt_state`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ripu.models.common import SegmentationModel

# VGG16's convolution blocks: (names, output channels at width 1).
_BLOCKS = (
    (("conv1_1", "conv1_2"), 64),
    (("conv2_1", "conv2_2"), 128),
    (("conv3_1", "conv3_2", "conv3_3"), 256),
    (("conv4_1", "conv4_2", "conv4_3"), 512),
    (("conv5_1", "conv5_2", "conv5_3"), 512),
)
_FC = 4096  # fc6 / fc7 channels at width 1
# The authors' crop offsets (model/fcn8s.py:140, :148-150, :156) and skip scales (:139, :147).
POOL4_OFFSET, POOL3_OFFSET, OUT_OFFSET = 5, 9, 31
POOL4_SCALE, POOL3_SCALE = 0.01, 0.0001
CONV_NAMES = tuple(name for names, _ in _BLOCKS for name in names) + ("fc6", "fc7")
# torchvision.models.vgg16's state-dict prefix of each layer (features.N, classifier.N).
TORCHVISION_KEYS = dict(zip(CONV_NAMES, (
    "features.0", "features.2", "features.5", "features.7", "features.10", "features.12",
    "features.14", "features.17", "features.19", "features.21", "features.24", "features.26",
    "features.28", "classifier.0", "classifier.3"), strict=True))
# The authors' top-level names of the layers this model keeps outside ``backbone``.
_AUTHORS_HEAD = {"score_fr": "classifier", "score_pool3": "score_pool3",
                 "score_pool4": "score_pool4", "upscore2": "upscore2",
                 "upscore_pool4": "upscore_pool4", "upscore8": "upscore8"}


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The authors' ``get_upsampling_weight`` (model/fcn8s.py:87-100): a bilinear kernel on
    the diagonal (channel c -> channel c), zero elsewhere.

    Shape:
        returns (channels, channels, kernel_size, kernel_size)
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight.float()


class VGG16Backbone(nn.Module):
    """VGG16's 13 convolutions with ReLU and ceil-mode pools, then fc6 (7x7) and fc7 (1x1) as
    convolutions with ReLU and Dropout2d. Layer names are the authors' (``conv1_1`` ...).

    Shape:
        ``(N, 3, H, W) -> (pool3 (N, 256w, h3, w3), pool4 (N, 512w, h4, w4),
        fc7 (N, 4096w, h7, w7))`` with the 100-pixel padding of ``conv1_1`` included
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        channels, outs = 3, []
        for names, out in _BLOCKS:
            out = max(1, round(out * width))
            outs.append(out)
            for name in names:
                pad = 100 if name == "conv1_1" else 1
                self.add_module(name, nn.Conv2d(channels, out, 3, padding=pad))
                channels = out
        fc = max(1, round(_FC * width))
        self.fc6 = nn.Conv2d(channels, fc, 7)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.drop6, self.drop7 = nn.Dropout2d(), nn.Dropout2d()
        self.channels = {"pool3": outs[2], "pool4": outs[3], "fc7": fc}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = []
        for names, _ in _BLOCKS:
            for name in names:
                x = self.relu(getattr(self, name)(x))
            x = self.pool(x)
            pooled.append(x)
        x = self.drop6(self.relu(self.fc6(x)))
        x = self.drop7(self.relu(self.fc7(x)))
        return pooled[2], pooled[3], x


def _crop(x: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """``x[:, :, offset:offset + h, offset:offset + w]`` with (h, w) of ``like``."""
    h, w = like.shape[-2:]
    return x[:, :, offset:offset + h, offset:offset + w]


class FCN8s(SegmentationModel):
    """FCN-8s on VGG16 (module docstring); logits at the input's resolution.

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, H, W)``
    """

    output_stride = 1

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__(num_classes)
        self.backbone = VGG16Backbone(width)
        c = self.backbone.channels
        self.classifier = nn.Conv2d(c["fc7"], num_classes, 1)  # the authors' score_fr
        self.score_pool3 = nn.Conv2d(c["pool3"], num_classes, 1)
        self.score_pool4 = nn.Conv2d(c["pool4"], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2,
                                                bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, bias=False)
        for score in (self.classifier, self.score_pool3, self.score_pool4):
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        for up in (self.upscore2, self.upscore_pool4, self.upscore8):
            up.weight.data.copy_(bilinear_kernel(num_classes, up.kernel_size[0]))
            up.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3, pool4, fc7 = self.backbone(x)
        up2 = self.upscore2(self.classifier(fc7))
        h = up2 + _crop(self.score_pool4(pool4 * POOL4_SCALE), POOL4_OFFSET, up2)
        up4 = self.upscore_pool4(h)
        h = up4 + _crop(self.score_pool3(pool3 * POOL3_SCALE), POOL3_OFFSET, up4)
        return _crop(self.upscore8(h), OUT_OFFSET, x).contiguous()

    def adapt_state(self, state: Mapping[str, torch.Tensor]
                    ) -> tuple[nn.Module, dict[str, torch.Tensor], str] | None:
        """Weights in another published layout as (module to load, its state, what it is):
        torchvision's VGG16 (``features.0.weight`` ...; fc6 / fc7 reshaped to 7x7 and 1x1
        convolutions, ``classifier.6`` (ImageNet's 1000 classes) dropped) into ``backbone``,
        or the LSE authors' FCN8s (``conv1_1.weight`` ..., ``score_fr``) into the whole
        model. None for any other layout (a ripu checkpoint)."""
        if "features.0.weight" in state:
            own = self.backbone.state_dict()
            out = {}
            for name, prefix in TORCHVISION_KEYS.items():
                for part in ("weight", "bias"):
                    key = f"{prefix}.{part}"
                    if key in state:
                        value = state[key]
                        want = own[f"{name}.{part}"].shape
                        if part == "weight" and value.dim() == 2 and value.numel() == want.numel():
                            value = value.reshape(want)
                        out[f"{name}.{part}"] = value
            out.update({k: v for k, v in state.items() if not k.startswith(
                tuple(f"{p}." for p in (*TORCHVISION_KEYS.values(), "classifier.6")))})
            return self.backbone, out, "a torchvision vgg16 state dict"
        if "conv1_1.weight" in state:
            def ours(key: str) -> str:
                layer, _, part = key.partition(".")
                if layer in _AUTHORS_HEAD:
                    return f"{_AUTHORS_HEAD[layer]}.{part}"
                return f"backbone.{key}"
            return self, {ours(k): v for k, v in state.items()}, \
                "an FCN8s state dict in the LSE authors' layout (model/fcn8s.py)"
        return None
