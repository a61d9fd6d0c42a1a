"""OCRNet (Yuan et al., ECCV 2020): backbone + OCR head; seg 1.0 + object regions 0.4.

The soft-object-region head is OCRNet's auxiliary head: it lives inside the decode head (its logits
feed the OCR path) and its loss is reported as ``loss_object_regions``, so ``aux_head`` adds no
second FCN head and ``model.aux_head`` is None.
"""

from __future__ import annotations

from typing import Any

from ..heads.base import DecodeHead
from ..heads.ocr_head import OCRHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["OCRNet"]


@register_model("ocrnet")
class OCRNet(Segmentor):
    head_cls = OCRHead
    description = "OCRNet: object-contextual representations over soft object regions (Yuan et al., ECCV 2020)"
    context_modules = ('SpatialGather', 'ObjectContextBlock')
    # mmseg's OCRNet is a cascade: decode_head.0 the FCN region head, decode_head.1 the OCR head
    mmseg_layout = MmsegLayout(dict(channels=512, key_channels=256, region_channels=256), "ocrnet/ocrnet_r101-d8_8xb2-80k_cityscapes-512x1024.py", signature="decode_head.1.object_context_block.",
                               auxiliary=False, renames=(
        ("1.object_context_block.query_project.", "object_context.query."), ("1.object_context_block.key_project.", "object_context.key."),
        ("1.object_context_block.value_project.", "object_context.value."), ("1.object_context_block.out_project.", "object_context.out."),
        ("1.object_context_block.bottleneck.", "fuse."), ("1.bottleneck.", "pixel_conv."), ("1.conv_seg.", "conv_seg."), ("0.", "region_head.")), zoo_miou=80.81)
    loss_terms = ("loss_object_regions",)

    def build_decode_head(self, in_channels: list[int], num_classes: int, **kwargs: Any) -> DecodeHead:
        kwargs.setdefault("concat_inputs", self.backbone.name.startswith("hrnet"))
        kwargs.setdefault("region_channels", self.aux_channels)  # the object-region head is OCRNet's aux head
        return super().build_decode_head(in_channels, num_classes, **kwargs)

    def build_aux_head(self, in_channels: list[int], num_classes: int) -> None:
        return None
