"""DeepLab-v3+ as in the authors' ``DepthwiseSeparableASPP`` (BIT-DA/RIPU
core/models/classifier.py:36-147, built with rates 1/6/12/18 in core/models/build.py:27-29):
dilated ResNet (output stride 8), depthwise-separable ASPP with image pooling and 512
channels, a 3x3 bottleneck, and a decoder that fuses the layer1 features; logits at stride 4."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ripu.models.common import ResNetBackbone, SegmentationModel, conv_bn_relu

# The authors' widths (classifier.py:63, :90-91, :98-99) and rates (build.py:27).
CHANNELS = 512
LOW_CHANNELS = 48
RATES = (6, 12, 18)


def separable_conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1
                           ) -> nn.Sequential:
    """Depthwise 3x3 (dilated, no bias) -> BN -> ReLU -> pointwise 1x1 (no bias) -> BN ->
    ReLU, the authors' ``DepthwiseSeparableConv2d`` (classifier.py:36-56).

    Shape:
        ``(N, in_channels, h, w) -> (N, out_channels, h, w)``
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                  groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        conv_bn_relu(in_channels, out_channels, 1),
    )


class ASPP(nn.Module):
    """Depthwise-separable ASPP (classifier.py:63-87): a 1x1 branch, one separable 3x3
    branch per rate, an image-pooling branch, concatenated and fused by a 3x3 bottleneck.

    Shape:
        ``(N, in_channels, h, w) -> (N, channels, h, w)``
    """

    def __init__(self, in_channels: int, rates: Sequence[int], channels: int = CHANNELS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1)]
            + [separable_conv_bn_relu(in_channels, channels, r) for r in rates]
        )
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, channels, 1)
        )
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pooling(x)
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLab-v3+ on a torchvision ResNet at output stride 8, as the authors build it: ASPP
    rates 6/12/18 plus a 1x1 branch and image pooling, 512 channels, a 3x3 bottleneck; the
    decoder concatenates the ASPP output upsampled (bilinear, align_corners=True) to layer1's
    size with a 48-channel projection of layer1 (560 channels), then two depthwise-separable
    3x3 convolutions to 512, dropout 0.1 and a 1x1 classifier (classifier.py:92-136).
    Convolutions use Kaiming-normal init, BatchNorm weight 1 / bias 0 (classifier.py:138-144).
    With trainable BatchNorm, training needs batches of 2 or more (the image-pooling branch
    normalises one value per channel and image).

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, ceil(H/4), ceil(W/4))``
    """

    output_stride = 4

    def __init__(
        self, num_classes: int, backbone: str = "resnet101",
        rates: Sequence[int] = RATES, channels: int = CHANNELS, low_channels: int = LOW_CHANNELS,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = ResNetBackbone(backbone)
        self.aspp = ASPP(ResNetBackbone.out_channels, rates, channels)
        self.low_project = conv_bn_relu(ResNetBackbone.low_channels, low_channels, 1)
        self.decoder = nn.Sequential(
            separable_conv_bn_relu(channels + low_channels, channels),
            separable_conv_bn_relu(channels, channels),
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
