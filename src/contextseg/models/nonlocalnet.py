"""NonLocalNet (Wang et al., CVPR 2018), as mmsegmentation builds it for segmentation: dilated
ResNet + FCN head with an embedded Gaussian non-local block + aux FCN; seg 1.0 + aux 0.4."""

from __future__ import annotations

from ..heads.nl_head import NLHead
from .registry import register_model
from .segmentor import MmsegLayout, Segmentor

__all__ = ["NonLocalNet"]


@register_model("nonlocalnet")
class NonLocalNet(Segmentor):
    head_cls = NLHead
    description = "NonLocalNet: embedded Gaussian self-attention of every pixel over all pixels (Wang et al., CVPR 2018)"
    context_modules = ("NonLocal2d",)
    mmseg_layout = MmsegLayout(dict(channels=512, reduction=2, use_scale=True, aux_channels=256), "nonlocal_net/nonlocal_r50-d8_4xb2-80k_cityscapes-512x1024.py",
                               signature="decode_head.nl_block.", refines="fcn",
                               renames=(("nl_block.g.conv.", "nl_block.g."), ("nl_block.theta.conv.", "nl_block.theta."), ("nl_block.phi.conv.", "nl_block.phi.")), zoo_miou=78.01)
    loss_terms = ()
