"""CPNet (Yu et al., CVPR 2020): dilated ResNet + Context Prior head + aux FCN; seg + 0.4 aux + 1.0 affinity."""

from __future__ import annotations

from ..heads.cp_head import CPHead
from .segmentor import Segmentor

__all__ = ["CPNet"]


class CPNet(Segmentor):
    head_cls = CPHead
    description = "CPNet: context prior map supervised by the Affinity Loss (Yu et al., CVPR 2020)"
