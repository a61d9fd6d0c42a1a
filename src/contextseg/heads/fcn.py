"""FCN head (Long et al., CVPR 2015, as configured in mmsegmentation's FCNHead)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..modules.common import ConvBNReLU
from .base import DecodeHead, HeadOutput

__all__ = ["FCNHead"]


class FCNHead(DecodeHead):
    """``num_convs`` CBR 3x3 -> (concat input, CBR 3x3) -> cls_seg.

    The baseline as mmsegmentation configures it: CBR 3x3 C5->512, CBR 3x3 512->512, concat the input, CBR 3x3 -> 512.
    The auxiliary head on C4 is the same class with ``num_convs=1, concat_input=False,
    channels=256, in_index=2``.

    Shape:
        ``features[in_index] (B, C, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        num_convs: int = 2,
        concat_input: bool = True,
        kernel_size: int = 3,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        if num_convs < 1:
            raise ValueError(f"FCNHead needs num_convs >= 1, got {num_convs}")
        c_in = self.input_channels
        self.convs = nn.Sequential(
            *[ConvBNReLU(c_in if i == 0 else channels, channels, kernel_size) for i in range(num_convs)]
        )
        self.conv_cat = ConvBNReLU(c_in + channels, channels, kernel_size) if concat_input else None

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        x = features[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return {"logits": self.cls_seg(out)}
