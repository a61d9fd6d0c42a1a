"""The baselines the context papers compare against: FCN, PSPNet, DeepLabV3, DeepLabV3+."""

from __future__ import annotations

from ..heads.aspp import ASPPHead, DeepLabV3PlusHead
from ..heads.fcn import FCNHead
from ..heads.psp import PSPHead
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["FCN", "PSPNet", "DeepLabV3", "DeepLabV3Plus"]


@register_model("fcn")
class FCN(Segmentor):
    head_cls = FCNHead
    description = "FCN baseline: two 3x3 convs on C5, concat input (Long et al., CVPR 2015)"


@register_model("pspnet")
class PSPNet(Segmentor):
    head_cls = PSPHead
    description = "PSPNet: pyramid pooling bins 1/2/3/6 (Zhao et al., CVPR 2017)"


@register_model("deeplabv3")
class DeepLabV3(Segmentor):
    head_cls = ASPPHead
    description = "DeepLabV3: atrous spatial pyramid pooling (Chen et al., 2017)"


@register_model("deeplabv3plus")
class DeepLabV3Plus(Segmentor):
    head_cls = DeepLabV3PlusHead
    description = "DeepLabV3+: ASPP plus a stride-4 decoder on C2 (Chen et al., ECCV 2018)"
