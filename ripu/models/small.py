"""A small, fast CPU segmentation network for the embedded synthetic benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ripu.models.common import SegmentationModel, conv_bn_relu
from ripu.models.deeplabv2 import SummedDilatedClassifier


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers at one dilation with an identity shortcut, then ReLU.

    Shape:
        ``(N, C, h, w) -> (N, C, h, w)``
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, 3, dilation=dilation),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class SmallBackbone(nn.Module):
    """Stem (3x3 conv, stride 2) -> stage at stride 4 -> stage at stride 8 with dilated
    residual blocks for context.

    Shape:
        ``(N, 3, H, W) -> (N, widths[-1], ceil(H/8), ceil(W/8))``
    """

    def __init__(self, widths: Sequence[int], dilations: Sequence[int]) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.stem = conv_bn_relu(3, w0, 3, stride=2)
        self.stage1 = nn.Sequential(conv_bn_relu(w0, w1, 3, stride=2), ResidualBlock(w1))
        self.stage2 = nn.Sequential(
            conv_bn_relu(w1, w2, 3, stride=2), *(ResidualBlock(w2, d) for d in dilations)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1(self.stem(x)))


class SmallSegNet(SegmentationModel):
    """Small DeepLab-v2-like network: :class:`SmallBackbone` at output stride 8 and a summed
    multi-dilation classifier: 0.23 M parameters for 19 classes, receptive field
    wider than a 128x256 image.

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, ceil(H/8), ceil(W/8))``
    """

    arch = "small"
    output_stride = 8

    def __init__(
        self, num_classes: int, widths: Sequence[int] = (16, 32, 64),
        dilations: Sequence[int] = (2, 4), head_dilations: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        super().__init__(num_classes)
        self.backbone = SmallBackbone(widths, dilations)
        self.classifier = SummedDilatedClassifier(widths[-1], num_classes, head_dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))
