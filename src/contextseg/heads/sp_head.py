"""SPNet's decode head: CBR 1x1 -> two mixed pooling modules -> CBR 3x3 -> cls_seg."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..modules.common import ConvBNReLU
from ..modules.strip_pooling import MixedPooling
from .base import DecodeHead, HeadOutput

__all__ = ["SPHead"]


class SPHead(DecodeHead):
    """SPNet head (the released SPHead).

    Args:
        mpm_channels: width of the MPMs (C5 -> 1024 by CBR 1x1 for ResNet-50/101).
        pool_sizes: the MPM's pyramid pooling sizes ((20, 12) for 60x60 features).
        num_mpm: MPMs in sequence (2).

    Shape:
        ``features[-1] (B, C5, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        mpm_channels: int = 1024,
        pool_sizes: Sequence[int | Sequence[int]] = (20, 12),
        num_mpm: int = 2,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        self.trans_layer = ConvBNReLU(self.input_channels, mpm_channels, 1)
        self.mixed_pooling = nn.Sequential(*[MixedPooling(mpm_channels, pool_sizes) for _ in range(num_mpm)])
        self.score_conv = ConvBNReLU(mpm_channels, channels, 3)

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        x = self.mixed_pooling(self.trans_layer(features[self.in_index]))
        return {"logits": self.cls_seg(self.score_conv(x))}
