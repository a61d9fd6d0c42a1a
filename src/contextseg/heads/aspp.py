"""DeepLabV3 (Chen et al., 2017) and DeepLabV3+ (Chen et al., ECCV 2018) heads.

Atrous spatial pyramid pooling: a 1x1 branch, three 3x3 branches at rates (6, 12, 18) * 16 / OS
(12/24/36 at OS 8, 6/12/18 at OS 16) and image pooling, each 256 channels, concatenated (1280).

The defaults follow the papers. mmsegmentation's layouts, for its converted weights: ``ASPPHead``
with 512-channel branches and a 3x3 bottleneck (``channels=512, bottleneck_kernel=3``), and
``DepthwiseSeparableASPPHead`` with depthwise-separable atrous branches and decoder convs as well
(``separable=True``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..modules.common import ConvBNReLU, SeparableConvBNReLU, resize
from .base import DecodeHead, HeadOutput

__all__ = ["ASPP", "ASPPHead", "DeepLabV3PlusHead", "aspp_dilations"]


def aspp_dilations(output_stride: int) -> tuple[int, int, int]:
    """The three atrous rates for a backbone of this output stride: (6, 12, 18) * 16 / OS."""
    return tuple(r * 16 // output_stride for r in (6, 12, 18))


class ASPP(nn.Module):
    """The five ASPP branches, concatenated: ``(B, C, h, w) -> (B, 5 * channels, h, w)``.
    ``separable``: the atrous branches depthwise-separable (DeepLabV3+ as mmsegmentation builds it)."""

    def __init__(self, in_channels: int, channels: int = 256, dilations: Sequence[int] = (12, 24, 36), separable: bool = False) -> None:
        super().__init__()
        atrous = SeparableConvBNReLU if separable else ConvBNReLU
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)]
            + [atrous(in_channels, channels, 3, dilation=d) for d in dilations]
        )
        self.out_channels = channels * (len(dilations) + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return torch.cat([pooled, *(b(x) for b in self.branches)], dim=1)


class ASPPHead(DecodeHead):
    """DeepLabV3: ASPP (1280) -> CBR 1x1 -> 256 -> cls_seg.

    Args:
        channels: width of every ASPP branch and of the bottleneck (256; mmsegmentation 512).
        dilations: the three atrous rates (default from the output stride).
        bottleneck_kernel: kernel of the CBR after the concatenation (1; mmsegmentation 3).

    Shape:
        ``features[-1] (B, C5, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 256,
        dilations: Sequence[int] | None = None,
        bottleneck_kernel: int = 1,
        separable: bool = False,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        if bottleneck_kernel not in (1, 3):
            raise ValueError(f"bottleneck_kernel must be 1 (the paper) or 3 (mmsegmentation), got {bottleneck_kernel}")
        self.aspp = ASPP(self.input_channels, channels, dilations or aspp_dilations(self.output_stride), separable=separable)
        self.bottleneck = ConvBNReLU(self.aspp.out_channels, channels, bottleneck_kernel)

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        out = self.bottleneck(self.aspp(features[self.in_index]))
        return {"logits": self.cls_seg(out)}


class DeepLabV3PlusHead(ASPPHead):
    """DeepLabV3+: the DeepLabV3 head plus a decoder on C2.

    C2 -> CBR 1x1 -> 48; the ASPP output upsampled to C2's size; concat (304) -> two CBR 3x3 256
    -> cls_seg. Logits come out at stride 4. ``separable=True``: the atrous branches and the two
    decoder convs depthwise-separable (mmsegmentation's ``DepthwiseSeparableASPPHead``).

    Shape:
        ``features [C2 (B, c2, 4h, 4w), ..., C5 (B, c5, h, w)] -> {"logits": (B, K, 4h, 4w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 256,
        c1_channels: int = 48,
        dilations: Sequence[int] | None = None,
        bottleneck_kernel: int = 1,
        separable: bool = False,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dilations=dilations, bottleneck_kernel=bottleneck_kernel, separable=separable,
                         dropout=dropout, in_index=in_index, **shared)
        self.c1_bottleneck = ConvBNReLU(self.in_channels[0], c1_channels, 1)
        decoder = SeparableConvBNReLU if separable else ConvBNReLU
        self.sep_bottleneck = nn.Sequential(decoder(channels + c1_channels, channels, 3), decoder(channels, channels, 3))

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        out = self.bottleneck(self.aspp(features[self.in_index]))
        c1 = self.c1_bottleneck(features[0])
        out = self.sep_bottleneck(torch.cat([resize(out, c1.shape[-2:]), c1], dim=1))
        return {"logits": self.cls_seg(out)}
