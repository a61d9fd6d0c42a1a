"""The non-local decode head: CBR 3x3 -> non-local block -> CBR 3x3 -> concat input -> CBR 3x3 ->
cls_seg (mmsegmentation's ``NLHead``, the FCN head with a non-local block between its two convs)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..modules.non_local import NonLocal2d
from .base import ContextMap, HeadOutput, feature_index
from .fcn import FCNHead

__all__ = ["NLHead"]

NONLOCAL_CAPTION = ("For each query pixel (cyan dot): its non-local attention, the weight with which it gathers each pixel's "
                    "features (brighter = more).")


class NLHead(FCNHead):
    """The non-local head as mmsegmentation builds it: ``convs[0]`` reduces C5 to ``channels``
    (CBR 3x3), one embedded Gaussian `NonLocal2d` (C' = ``channels // reduction``, dot products
    scaled by 1 / sqrt(C') when ``use_scale``), ``convs[1]`` (CBR 3x3), with ``concat_input`` the
    input concatenated and fused (CBR 3x3 -> ``channels``), then ``cls_seg`` with dropout 0.1.

    Shape:
        ``features[in_index] (B, C, h, w) -> {"logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        reduction: int = 2,
        use_scale: bool = True,
        concat_input: bool = True,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, num_convs=2, concat_input=concat_input, dropout=dropout, in_index=in_index, **shared)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"NLHead needs an integer reduction >= 1 (C' = channels // reduction), got {reduction!r}")
        self.nl_block = NonLocal2d(channels, reduction, use_scale)

    def forward(self, features: Sequence[torch.Tensor]) -> HeadOutput:
        x = features[self.in_index]
        out = self.convs[1](self.nl_block(self.convs[0](x)))
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return {"logits": self.cls_seg(out)}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """For each query pixel, its non-local attention over the image (the softmax row of Eq. 1
        with the embedded Gaussian: which pixels it gathers from), at feature resolution."""
        out = self.convs[0](features[self.in_index])
        h, w = out.shape[-2:]
        index = torch.tensor(feature_index(pixels, image_size, (h, w)), dtype=torch.long)
        rows = self.nl_block.attention(out, index)[0] if len(pixels) else []
        return [ContextMap("pixel_map", "non_local", f"non-local attention of ({px}, {py})", row.view(h, w), pixel=(px, py), vrange=None,
                           caption=NONLOCAL_CAPTION)
                for (px, py), row in zip(pixels, rows)]
