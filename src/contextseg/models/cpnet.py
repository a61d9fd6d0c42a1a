"""CPNet (Yu et al., CVPR 2020): dilated ResNet + Context Prior head + aux FCN; seg + 0.4 aux + 1.0 affinity."""

from __future__ import annotations

import math
from typing import Any

from ..heads.cp_head import CPHead
from .segmentor import Segmentor

__all__ = ["CPNet"]


class CPNet(Segmentor):
    head_cls = CPHead
    description = "CPNet: context prior map supervised by the Affinity Loss (Yu et al., CVPR 2020)"
    loss_terms = ("loss_affinity",)

    @classmethod
    def small_options(cls, size: tuple[int, int]) -> dict[str, Any]:
        return {"prior_size": tuple(math.ceil(s / 8) for s in size)}  # the prior is tied to the features
