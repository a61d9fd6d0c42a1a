"""CPNet (Yu et al., CVPR 2020): dilated ResNet + Context Prior head + aux FCN; seg + 0.4 aux + 1.0 affinity."""

from __future__ import annotations

from typing import Any, Sequence

from ..heads.cp_head import CPHead
from ..modules.common import feature_size
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["CPNet"]


@register_model("cpnet")
class CPNet(Segmentor):
    head_cls = CPHead
    onnx_any_size = False  # the context prior is the training crop's feature map
    description = "CPNet: context prior map supervised by the Affinity Loss (Yu et al., CVPR 2020)"
    context_modules = ('AggregationModule', 'ContextPriorLayer')
    loss_terms = ("loss_affinity",)

    @classmethod
    def crop_options(cls, crop_size: Sequence[int], output_stride: int) -> dict[str, Any]:
        """The context prior map is N x N over the training crop's features: ``prior_size`` =
        ``ceil(crop / output_stride)``."""
        return {"prior_size": feature_size(crop_size, output_stride)}

    def tied_input_size(self) -> tuple[int, int]:
        crop = self.meta.get("crop_size") or [p * self.backbone.output_stride for p in self.decode_head.prior_size]
        return tuple(int(c) for c in crop)
