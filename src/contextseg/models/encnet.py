"""EncNet (Zhang et al., CVPR 2018): dilated ResNet + Context Encoding head + aux FCN; seg + 0.4 aux + 0.2 SE."""

from __future__ import annotations

from ..heads.enc_head import EncHead
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["EncNet"]


@register_model("encnet")
class EncNet(Segmentor):
    head_cls = EncHead
    description = "EncNet: Encoding layer, channel gating and the SE loss (Zhang et al., CVPR 2018)"
    loss_terms = ("loss_se",)
