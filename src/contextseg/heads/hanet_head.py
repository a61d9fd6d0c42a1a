"""HANet's head: DeepLabV3+ (OS 8, ASPP 12/24/36, 1280-channel concat) with four height-driven attentions."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..modules.common import resize
from ..modules.height_attention import HeightAttention
from .aspp import DeepLabV3PlusHead
from .base import ContextMap, HeadOutput

__all__ = ["HANetHead"]

HANET_CAPTION = ("Each panel: one HANet block's attention from the top of the image to the bottom (line: mean over channels; band: "
                 "10-90 % of the channels; cyan: the rows of the query pixels).")


class HANetHead(DeepLabV3PlusHead):
    """DeepLabV3+ with HANet blocks as in the released DeepV3PlusHANet (flags 1 1 1 1 0):

    ====  =========================  ===============================================
    hanet  lower input                 modulates
    ====  =========================  ===============================================
    0      layer3 (C4)                 layer4 output (C5)
    1      layer4 after hanet 0        ASPP output (1280, no projection)
    2      ASPP output after hanet 1   the CBR 1x1 -> 256 after ASPP
    3      decoder concat (304)        the decoder's 3x3 output (256)
    ====  =========================  ===============================================

    As the release: the decoder concatenates [C2 projection (48), upsampled ASPP path (256)] in
    that order and upsamples with ``align_corners=True``; there is no dropout before the classifier
    (``dropout=0``); every block looks up its positions from the image rows (see
    `HeightAttention`).

    Args:
        hanet_reduction: r of every block (64 for OS 8, 32 for OS 16).
        hanet_rows: pooled rows (16).

    Forward takes ``positions (B, H)``: each input-image row's top edge as a fraction of the
    original image (None = the input is the whole image).

    Shape:
        ``features [C2..C5] -> {"logits": (B, K, 4h, 4w)}``.
    """

    uses_positions = True

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 256,
        c1_channels: int = 48,
        dilations: Sequence[int] | None = None,
        hanet_reduction: int = 64,
        hanet_rows: int = 16,
        dropout: float = 0.0,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, c1_channels=c1_channels, dilations=dilations, dropout=dropout, in_index=in_index, **shared)
        c4, c5 = self.in_channels[2], self.input_channels
        aspp = self.aspp.out_channels
        blocks = [(c4, c5), (c5, aspp), (aspp, channels), (c1_channels + channels, channels)]
        self.hanet = nn.ModuleList(HeightAttention(lo, hi, hanet_reduction, hanet_rows) for lo, hi in blocks)

    def _forward(self, features: Sequence[torch.Tensor], positions: torch.Tensor | None, record: list | None = None) -> torch.Tensor:
        """The decoder's output before ``cls_seg``; ``record`` collects each block's attention."""

        def attend(i: int, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
            attention = self.hanet[i](low, high, positions)
            if record is not None:
                record.append(attention)
            return high * attention

        c2, c4, c5 = features[0], features[2], features[self.in_index]
        c5 = attend(0, c4, c5)
        aspp = attend(1, c5, self.aspp(c5))
        x = attend(2, aspp, self.bottleneck(aspp))
        c1 = self.c1_bottleneck(c2)
        dec0 = torch.cat([c1, resize(x, c1.shape[-2:], align_corners=True)], dim=1)
        return attend(3, dec0, self.sep_bottleneck(dec0))

    def forward(self, features: Sequence[torch.Tensor], positions: torch.Tensor | None = None) -> HeadOutput:
        return {"logits": self.cls_seg(self._forward(features, positions))}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], positions: torch.Tensor | None = None, **inputs) -> list[ContextMap]:
        """Each HANet block's attention ``(C_h, rows)`` along the image height, top to bottom: how
        much each channel of the map it modulates is kept at each height of the image."""
        record: list[torch.Tensor] = []
        self._forward(features, positions, record)
        return [ContextMap("row_curve", "height_attention", f"HANet block {i}", a[0, :, :, 0], caption=HANET_CAPTION) for i, a in enumerate(record)]
