"""SPNet (Hou et al., CVPR 2020): ResNet with strip pooling modules + mixed pooling head + aux FCN."""

from __future__ import annotations

from typing import Any

from ..backbones import TimmBackbone
from ..heads.sp_head import SPHead
from ..modules.strip_pooling import insert_strip_pooling
from .segmentor import Segmentor

__all__ = ["SPNet"]


class SPNet(Segmentor):
    """SPNet. ``spm=True`` (default) inserts strip pooling modules into the ResNet backbone
    (every block of layer4, the last block of layers 1-3); they train at the backbone LR."""

    head_cls = SPHead
    description = "SPNet: strip pooling in the backbone, mixed pooling in the head (Hou et al., CVPR 2020)"

    @classmethod
    def small_options(cls, size: tuple[int, int]) -> dict[str, Any]:
        return {"pool_sizes": (4, 2), "mpm_channels": 128}  # the paper's (20, 12) need 60x60 features

    def __init__(self, num_classes: int, spm: bool = True, **kwargs: Any) -> None:
        self._spm = spm
        super().__init__(num_classes, **kwargs)

    def build_backbone(self, name: str, output_stride: int, pretrained) -> TimmBackbone:
        backbone = super().build_backbone(name, output_stride, pretrained)
        if self._spm:
            insert_strip_pooling(backbone.body)
        return backbone
