"""OCRNet's decode head: soft object regions -> spatial gather -> object context -> fusion -> cls_seg."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..losses import CrossEntropyLoss
from ..modules.common import ConvBNReLU, resize
from ..modules.object_context import ObjectContextBlock, SpatialGather
from .base import ContextMap, DecodeHead, HeadOutput, feature_index
from .fcn import FCNHead

__all__ = ["OCRHead", "OCRHeadOutput"]


class OCRHeadOutput(HeadOutput, total=False):
    object_regions: torch.Tensor  # (B, K, h, w) soft object regions (logits)


class OCRHead(DecodeHead):
    """OCR head, ResNet and HRNet variants (openseg's SpatialOCRNet and HRNet-OCR).

    1. Soft object regions: ResNet, the FCN auxiliary head on C4 (CBR 3x3 -> 256, cls_seg); HRNet
       (``concat_inputs=True``), CBR 1x1 720 -> 720 then 1x1 -> K on the four branches upsampled
       to the largest and concatenated. They are supervised by cross entropy (``loss_object_regions``,
       weight 0.4) and feed the OCR path, so they get gradients from both.
    2. Pixel features F = CBR 3x3 in -> 512 (C5, or the concatenated HRNet features).
    3. SpatialGather -> ObjectContextBlock (key channels 256) -> CBR 1x1 on concat[context, F] -> 512.
    4. cls_seg, whose Dropout2d is the OCR module's dropout: 0.1 for ResNet, 0.05 for HRNet.

    Shape:
        ``features -> {"logits": (B, K, h, w), "object_regions": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        key_channels: int = 256,
        region_channels: int = 256,
        gather_scale: float = 1.0,
        query_scale: int = 1,
        concat_inputs: bool = False,
        region_weight: float = 0.4,
        dropout: float | None = None,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        if dropout is None:
            dropout = 0.05 if concat_inputs else 0.1
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        self.concat_inputs = concat_inputs
        if concat_inputs:  # HRNet: every branch, upsampled and concatenated (720 channels for W48)
            c_in = sum(self.in_channels)
            self.region_head = nn.Sequential(ConvBNReLU(c_in, c_in, 1), nn.Conv2d(c_in, num_classes, 1))
        else:  # ResNet: the FCN auxiliary head on C4
            c_in = self.input_channels
            self.region_head = FCNHead(in_channels, num_classes, channels=region_channels, num_convs=1, concat_input=False, in_index=2)
        self.pixel_conv = ConvBNReLU(c_in, channels, 3)
        self.gather = SpatialGather(gather_scale)
        self.object_context = ObjectContextBlock(channels, key_channels, query_scale)
        self.fuse = ConvBNReLU(2 * channels, channels, 1)
        self.region_weight = region_weight
        self.region_loss = CrossEntropyLoss(self.ignore_index, self.class_weight)

    @torch.no_grad()
    def init_weights(self) -> None:
        """mmseg's init (see `DecodeHead.init_weights`); the HRNet region classifier, an
        ``FCNHead.conv_seg`` in mmseg, is N(0, 0.01) too."""
        super().init_weights()
        if self.concat_inputs:
            nn.init.normal_(self.region_head[-1].weight, std=0.01)
            nn.init.zeros_(self.region_head[-1].bias)

    def _inputs(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.concat_inputs:
            return features[self.in_index]
        size = features[0].shape[-2:]
        return torch.cat([resize(f, size) for f in features], dim=1)

    def _regions(self, x: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.region_head(x) if self.concat_inputs else self.region_head(features)["logits"]

    def forward(self, features: Sequence[torch.Tensor]) -> OCRHeadOutput:
        x = self._inputs(features)
        regions = self._regions(x, features)
        pixels = self.pixel_conv(x)
        context = self.object_context(pixels, self.gather(pixels, regions))
        out = self.fuse(torch.cat([context, pixels], dim=1))
        return {"logits": self.cls_seg(out), "object_regions": regions}

    def losses(self, outputs: OCRHeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        regions = resize(outputs["object_regions"], targets.shape[-2:])
        return {"loss_object_regions": self.region_weight * self.region_loss(regions, targets)}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """Each object region k's spatial softmax (the weights that pool the region representation
        f_k from the pixels) and, for each query pixel i, its pixel-region attention
        ``w_ik = softmax_k(phi(x_i) . psi(f_k) / sqrt(key))`` over the K regions."""
        x = self._inputs(features)
        pixel_feats = self.pixel_conv(x)
        region_logits = self._regions(x, features)
        weights = self.gather.weights(pixel_feats, region_logits)[0]  # (K, N)
        h, w = pixel_feats.shape[-2:]
        maps = [ContextMap("pixel_map", "regions", "object region", weights[k].view(h, w), label=k, vrange=None,
                           caption="Each panel: an object region, the soft weights with which OCR pools the pixels into that class's region (brighter = more), for the classes predicted on the image.") for k in range(weights.shape[0])]
        regions = self.gather(pixel_feats, region_logits)
        attention = self.object_context.attention(pixel_feats, regions)[0]  # (N', K)
        index = feature_index(pixels, image_size, self.object_context.pool(pixel_feats).shape[-2:])
        for (px, py), row in zip(pixels, attention[index]):
            maps.append(ContextMap("class_bars", "pixel_region_attention", f"pixel-region attention of ({px}, {py})", row, pixel=(px, py),
                                    caption="For each query pixel (cyan dot): its pixel-region attention, the weights it gives the object regions (the 12 largest)."))
        return maps
