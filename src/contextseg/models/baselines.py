"""The baselines the context papers compare against: FCN, PSPNet, DeepLabV3, DeepLabV3+."""

from __future__ import annotations

from ..heads.aspp import ASPPHead, DeepLabV3PlusHead
from ..heads.fcn import FCNHead
from ..heads.psp import PSPHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["FCN", "PSPNet", "DeepLabV3", "DeepLabV3Plus"]


@register_model("fcn")
class FCN(Segmentor):
    head_cls = FCNHead
    description = "FCN baseline: two 3x3 convs on C5, concat input (Long et al., CVPR 2015)"
    mmseg_layout = MmsegLayout(dict(channels=512, num_convs=2, concat_input=True, aux_channels=256), "fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py", signature="decode_head.conv_cat.", zoo_miou=73.61)


@register_model("pspnet")
class PSPNet(Segmentor):
    head_cls = PSPHead
    description = "PSPNet: pyramid pooling bins 1/2/3/6 (Zhao et al., CVPR 2017)"
    mmseg_layout = MmsegLayout(dict(channels=512, aux_channels=256), "pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py", signature="decode_head.psp_modules.", renames=(("psp_modules.", "ppm.stages."),), zoo_miou=78.55)


@register_model("deeplabv3")
class DeepLabV3(Segmentor):
    head_cls = ASPPHead
    description = "DeepLabV3: atrous spatial pyramid pooling (Chen et al., 2017)"
    mmseg_layout = MmsegLayout(dict(channels=512, bottleneck_kernel=3, aux_channels=256), "deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py", signature="decode_head.aspp_modules.",
                               renames=(("image_pool.", "aspp.image_pool."), ("aspp_modules.", "aspp.branches.")), zoo_miou=79.32)


@register_model("deeplabv3plus")
class DeepLabV3Plus(Segmentor):
    head_cls = DeepLabV3PlusHead
    description = "DeepLabV3+: ASPP plus a stride-4 decoder on C2 (Chen et al., ECCV 2018)"
    mmseg_layout = MmsegLayout(dict(channels=512, c1_channels=48, bottleneck_kernel=3, separable=True, aux_channels=256),
                               "deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py",
                               signature="decode_head.c1_bottleneck.", refines="deeplabv3",
                               renames=(("image_pool.", "aspp.image_pool."), ("aspp_modules.", "aspp.branches.")), zoo_miou=80.09)
