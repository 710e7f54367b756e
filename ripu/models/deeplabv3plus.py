"""DeepLab-v3+: dilated ResNet (output stride 8), ASPP with image pooling, and a decoder
that fuses the layer1 features; logits at stride 4."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ripu.models.common import ResNetBackbone, SegmentationModel, conv_bn_relu


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one 3x3 branch per rate and an
    image-pooling branch, concatenated and projected by a 1x1 convolution.

    Shape:
        ``(N, in_channels, h, w) -> (N, channels, h, w)``
    """

    def __init__(self, in_channels: int, rates: Sequence[int], channels: int = 256) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1)]
            + [conv_bn_relu(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, channels, 1)
        )
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pooling(x)
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLab-v3+ on a torchvision ResNet at output stride 8. ASPP rates default to
    12/24/36 (the usual 6/12/18 at OS 16, doubled for OS 8); the decoder concatenates the
    ASPP output upsampled (bilinear, align_corners=True) to layer1's size with a 48-channel
    projection of layer1, then two 3x3 convolutions, dropout 0.1 and a 1x1 classifier.
    Convolutions use Kaiming-normal init, BatchNorm weight 1 / bias 0, as in the authors' code.
    With trainable BatchNorm, training needs batches of 2 or more (the image-pooling branch
    normalises one value per channel and image).

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, ceil(H/4), ceil(W/4))``
    """

    arch = "deeplabv3plus"
    output_stride = 4

    def __init__(
        self, num_classes: int, backbone: str = "resnet101",
        rates: Sequence[int] = (12, 24, 36), channels: int = 256, low_channels: int = 48,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = ResNetBackbone(backbone)
        self.aspp = ASPP(ResNetBackbone.out_channels, rates, channels)
        self.low_project = conv_bn_relu(ResNetBackbone.low_channels, low_channels, 1)
        self.decoder = nn.Sequential(
            conv_bn_relu(channels + low_channels, channels, 3),
            conv_bn_relu(channels, channels, 3),
            nn.Dropout2d(0.1),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for module in (self.aspp, self.low_project, self.decoder, self.classifier):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, out = self.backbone(x)
        context = F.interpolate(
            self.aspp(out), size=low.shape[-2:], mode="bilinear", align_corners=True
        )
        fused = torch.cat([context, self.low_project(low)], dim=1)
        return self.classifier(self.decoder(fused))
