"""EncNet (Zhang et al., CVPR 2018): dilated ResNet + Context Encoding head + aux FCN; seg + 0.4 aux + 0.2 SE."""

from __future__ import annotations

from ..heads.enc_head import EncHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["EncNet"]


@register_model("encnet")
class EncNet(Segmentor):
    head_cls = EncHead
    description = "EncNet: Encoding layer, channel gating and the SE loss (Zhang et al., CVPR 2018)"
    context_modules = ('Encoding', 'EncModule')
    mmseg_layout = MmsegLayout(dict(channels=512, num_codes=32, aux_channels=256), "encnet/encnet_r50-d8_4xb2-80k_cityscapes-512x1024.py", signature="decode_head.enc_module.", renames=(
        ("enc_module.encoding_project.", "enc_module.encoding.0."), ("enc_module.encoding.0.", "enc_module.encoding.1."),
        ("enc_module.encoding.1.", "enc_module.encoding.2."), ("bottleneck.", "conv5.")), zoo_miou=77.94)
    loss_terms = ("loss_se",)
