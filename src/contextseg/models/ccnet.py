"""CCNet (Huang et al., ICCV 2019): dilated ResNet + recurrent criss-cross attention head + aux FCN;
seg 1.0 + aux 0.4."""

from __future__ import annotations

from ..heads.cc_head import CCHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["CCNet"]


@register_model("ccnet")
class CCNet(Segmentor):
    head_cls = CCHead
    description = "CCNet: recurrent criss-cross attention over each pixel's row and column (Huang et al., ICCV 2019)"
    context_modules = ('CrissCrossAttention',)
    mmseg_layout = MmsegLayout(dict(channels=512, recurrence=2, aux_channels=256), "ccnet/ccnet_r50-d8_4xb2-80k_cityscapes-512x1024.py", signature="decode_head.cca.", refines="fcn",
                               renames=(("cca.gamma.scale", "cca.gamma"),), zoo_miou=79.03)
    loss_terms = ()
