"""A small, fast CPU segmentation network for the embedded synthetic benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ripu.models.common import SegmentationModel, conv_bn_relu


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
    residual blocks for context. Returns both stages' features.

    Shape:
        ``(N, 3, H, W) -> ((N, widths[1], H/4, W/4), (N, widths[2], H/8, W/8))``
        (sizes rounded up)
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.stage1(self.stem(x))
        return low, self.stage2(low)


class LightDecoder(nn.Module):
    """Context at stride 8 (parallel dilated 3x3 convolutions, summed, BN-ReLU), upsampled
    to stride 4, concatenated with the stride-4 features, then one 3x3 conv-BN-ReLU.

    Shape:
        ``(N, c_low, h, w), (N, c_high, ceil(h/2), ceil(w/2)) -> (N, channels, h, w)``
    """

    def __init__(self, c_low: int, c_high: int, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.context = nn.ModuleList(
            nn.Conv2d(c_high, channels, 3, padding=d, dilation=d, bias=False) for d in dilations
        )
        self.context_bn = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.fuse = conv_bn_relu(channels + c_low, channels, 3)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        ctx = self.context[0](high)
        for conv in self.context[1:]:
            ctx = ctx + conv(high)
        ctx = F.interpolate(self.context_bn(ctx), size=low.shape[-2:], mode="bilinear",
                            align_corners=False)
        return self.fuse(torch.cat([ctx, low], dim=1))


class SmallSegNet(SegmentationModel):
    """Small DeepLab-v3+-like network: :class:`SmallBackbone` (stride 8 with dilated
    blocks), a :class:`LightDecoder` back to output stride 4 and a 1x1 classifier (weights
    ~ N(0, 0.01)); 0.28 M parameters for 19 classes, receptive field wider than a 128x256
    image. Weights and activations are channels-last; the logits are contiguous NCHW.

    Shape:
        ``(N, 3, H, W) -> (N, num_classes, ceil(H/4), ceil(W/4))``
    """

    output_stride = 4

    def __init__(
        self, num_classes: int, widths: Sequence[int] = (16, 32, 64),
        dilations: Sequence[int] = (2, 4), head_dilations: Sequence[int] = (1, 2, 4, 8),
        decoder_channels: int = 32,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = SmallBackbone(widths, dilations)
        self.decoder = LightDecoder(widths[1], widths[2], decoder_channels, head_dilations)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.01)
        self.to(memory_format=torch.channels_last)  # about 1.25x faster on CPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.decoder(*self.backbone(x))).contiguous()
