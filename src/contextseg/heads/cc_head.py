"""CCNet's decode head: CBR 3x3 -> recurrent criss-cross attention (R passes) -> CBR 3x3 -> concat
input -> CBR 3x3 -> cls_seg (the RCCA module, as mmsegmentation's ``CCHead``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..modules.criss_cross import CrissCrossAttention
from .base import ContextMap, HeadOutput, feature_index
from .fcn import FCNHead

__all__ = ["CCHead"]

CCNET_CAPTION = ("Each row is a query pixel (cyan dot): its criss-cross attention in the first and the second pass (weights on its row "
                 "and column, brighter = more) and the weight with which every pixel reaches it after both passes.")


class CCHead(FCNHead):
    """The recurrent criss-cross attention head (Sec. 3.1): ``convs[0]`` reduces C5 to ``channels``
    (CBR 3x3), one `CrissCrossAttention` is applied
    ``recurrence`` times with shared weights (R = 2 in the paper), ``convs[1]`` (CBR 3x3), the input
    concatenated and fused (CBR 3x3 -> ``channels``), then ``cls_seg`` with dropout 0.1.

    Shape:
        ``features[in_index] (B, C, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        recurrence: int = 2,
        reduction: int = 8,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, num_convs=2, concat_input=True, dropout=dropout, in_index=in_index, **shared)
        if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 1:
            raise ValueError(f"CCHead needs recurrence >= 1 (the paper's R), got {recurrence!r}")
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels, reduction)

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        x = features[self.in_index]
        out = self.convs[0](x)
        for _ in range(self.recurrence):
            out = self.cca(out)
        out = self.conv_cat(torch.cat([x, self.convs[1](out)], dim=1))
        return {"logits": self.cls_seg(out)}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """For each query pixel: its criss-cross attention in the first and the second pass (its
        row and column at feature resolution) and what reaches it after both passes (every pixel's
        weight through the pixels of its cross, `CrissCrossAttention.reach_map`)."""
        out = self.convs[0](features[self.in_index])
        attentions = []
        for _ in range(self.recurrence):
            attentions.append(self.cca.attention(out)[0])
            out = self.cca(out)
        h, w = out.shape[-2:]
        maps = []
        for (px, py), index in zip(pixels, feature_index(pixels, image_size, (h, w))):
            cell = divmod(index, w)
            for loop, attention in enumerate(attentions[:2], start=1):
                maps.append(ContextMap("pixel_map", "criss_cross", f"pass {loop}: attention over the row and column of ({px}, {py})",
                                       self.cca.cross_map(attention, cell), pixel=(px, py), vrange=None, caption=CCNET_CAPTION))
            if len(attentions) >= 2:
                maps.append(ContextMap("pixel_map", "criss_cross", f"after two passes: what reaches ({px}, {py})",
                                       self.cca.reach_map(attentions[0], attentions[1], cell), pixel=(px, py), vrange=None, caption=CCNET_CAPTION))
        return maps
