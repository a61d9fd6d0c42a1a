"""PSPNet head: the pyramid pooling module (Zhao et al., CVPR 2017)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..modules.common import AdaptiveAvgPool2d, ConvBNReLU, resize
from .base import DecodeHead, HeadOutput

__all__ = ["PyramidPoolingModule", "PSPHead"]


class PyramidPoolingModule(nn.Module):
    """Adaptive average pooling to each bin size, CBR 1x1, bilinear upsampling back.

    Shape:
        ``(B, C, h, w) -> [(B, channels, h, w)] * len(bins)``.
    """

    def __init__(self, in_channels: int, channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(b), ConvBNReLU(in_channels, channels, 1)) for b in bins
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(stage(x), x.shape[-2:]) for stage in self.stages]


class PSPHead(DecodeHead):
    """PPM bins (1, 2, 3, 6), each CBR 1x1 C5->512, concat with the input, CBR 3x3 -> 512, cls_seg.

    Shape:
        ``features[-1] (B, C5, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        c_in = self.input_channels
        self.ppm = PyramidPoolingModule(c_in, channels, pool_scales)
        self.bottleneck = ConvBNReLU(c_in + len(pool_scales) * channels, channels, 3)

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        x = features[self.in_index]
        out = self.bottleneck(torch.cat([x, *self.ppm(x)], dim=1))
        return {"logits": self.cls_seg(out)}
