"""DANet (Fu et al., CVPR 2019): dilated ResNet + dual attention head + aux FCN; seg 1.0 + position
branch 1.0 + channel branch 1.0 + aux 0.4."""

from __future__ import annotations

from ..heads.da_head import DAHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["DANet"]


@register_model("danet")
class DANet(Segmentor):
    head_cls = DAHead
    description = "DANet: position and channel self-attention, summed (Fu et al., CVPR 2019)"
    context_modules = ('PositionAttention', 'ChannelAttention')
    mmseg_layout = MmsegLayout(dict(channels=512, pam_channels=64, aux_channels=256), "danet/danet_r50-d8_4xb2-80k_cityscapes-512x1024.py",
                               signature="decode_head.pam.", renames=(("pam.gamma.scale", "pam.gamma"), ("cam.gamma.scale", "cam.gamma")), zoo_miou=79.34)
    loss_terms = ("loss_pam", "loss_cam")
