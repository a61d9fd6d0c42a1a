"""CCNet (Huang et al., ICCV 2019): dilated ResNet + recurrent criss-cross attention head + aux FCN;
seg 1.0 + aux 0.4."""

from __future__ import annotations

from ..heads.cc_head import CCHead
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["CCNet"]


@register_model("ccnet")
class CCNet(Segmentor):
    head_cls = CCHead
    description = "CCNet: recurrent criss-cross attention over each pixel's row and column (Huang et al., ICCV 2019)"
    loss_terms = ()
