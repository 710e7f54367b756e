"""DeepLab-v2: dilated ResNet (output stride 8) with a summed multi-dilation classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ripu.models.common import ResNetBackbone, SegmentationModel


class SummedDilatedClassifier(nn.Module):
    """DeepLab-v2 ASPP classifier: parallel 3x3 convolutions from the features straight to
    class scores, one per dilation rate, outputs summed. Weights ~ N(0, 0.01) as in the
    authors' code (biases keep PyTorch's default init).

    Shape:
        ``(N, in_channels, h, w) -> (N, num_classes, h, w)``
    """

    def __init__(self, in_channels: int, num_classes: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True)
            for d in dilations
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class DeepLabV2(SegmentationModel):
    """DeepLab-v2 on a torchvision ResNet at output stride 8; classifier rates 6/12/18/24
    (docs/method.md section 2).

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, ceil(H/8), ceil(W/8))``
    """

    output_stride = 8

    def __init__(
        self, num_classes: int, backbone: str = "resnet101",
        dilations: Sequence[int] = (6, 12, 18, 24),
    ) -> None:
        super().__init__(num_classes)
        self.backbone = ResNetBackbone(backbone)
        self.classifier = SummedDilatedClassifier(
            ResNetBackbone.out_channels, num_classes, dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, features = self.backbone(x)
        return self.classifier(features)
