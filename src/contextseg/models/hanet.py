"""HANet (Choi et al., CVPR 2020): DeepLabV3+ R101 OS 8 with height-driven attention; seg + 0.4 aux.

The auxiliary FCN loss on layer3 is computed at feature resolution against nearest-downsampled
labels (the released code's ``dsn``), and logits are upsampled with ``align_corners=True``. Recipes give the HANet blocks their own weight decay with a
``train.paramwise`` rule on ``decode_head.hanet.*``.
"""

from __future__ import annotations

from ..heads.hanet_head import HANetHead
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["HANet"]


@register_model("hanet")
class HANet(Segmentor):
    head_cls = HANetHead
    description = "HANet: height-driven channel attention with row positions in DeepLabV3+ (Choi et al., CVPR 2020)"
    context_modules = ('HeightAttention',)
    aux_at_feature_resolution = True
    align_corners = True  # the release upsamples every map with align_corners=True
