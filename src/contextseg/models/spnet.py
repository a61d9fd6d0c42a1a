"""SPNet (Hou et al., CVPR 2020): ResNet with strip pooling modules + mixed pooling head + aux FCN."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..backbones import TimmBackbone
from ..heads.base import ContextMap
from ..heads.sp_head import SPHead
from ..modules.strip_pooling import StripPooling, insert_strip_pooling
from .registry import register_model
from .segmentor import Segmentor

__all__ = ["SPNet"]


@register_model("spnet")
class SPNet(Segmentor):
    """SPNet. ``spm=True`` (default) inserts strip pooling modules into the ResNet backbone
    (every block of layer4, the last block of layers 1-3); they train at the backbone LR."""

    head_cls = SPHead
    description = "SPNet: strip pooling in the backbone, mixed pooling in the head (Hou et al., CVPR 2020)"
    context_modules = ('StripPooling', 'MixedPooling')

    @classmethod
    def small_options(cls, size: tuple[int, int]) -> dict[str, Any]:
        return {**super().small_options(size), "pool_sizes": (4, 2), "mpm_channels": 128}  # the paper's (20, 12) need 60x60 features

    def __init__(self, num_classes: int, spm: bool = True, **kwargs: Any) -> None:
        self._spm = spm
        super().__init__(num_classes, **kwargs)

    def build_backbone(self, name: str, output_stride: int, pretrained) -> TimmBackbone:
        backbone = super().build_backbone(name, output_stride, pretrained)
        if self._spm:
            insert_strip_pooling(backbone.body)
        return backbone

    @torch.no_grad()
    def context_maps(self, images: torch.Tensor, pixels: Sequence[tuple[int, int]], positions: torch.Tensor | None = None) -> list[ContextMap]:
        """The head's maps (none: the mixed pooling head keeps no per-pixel weights) and each strip
        pooling module's gate ``sigmoid(fuse(relu(strips)))`` in the backbone, mean over channels:
        where the long horizontal and vertical strips let a position gather context."""
        inputs: dict[str, torch.Tensor] = {}
        modules = {name: m for name, m in self.backbone.named_modules() if isinstance(m, StripPooling)}
        hooks = [m.register_forward_hook(lambda m, i, o, n=name: inputs.__setitem__(n, i[0])) for name, m in modules.items()]
        try:
            maps = super().context_maps(images, pixels, positions)
        finally:
            for hook in hooks:
                hook.remove()
        for name, x in inputs.items():
            short = name.removeprefix("body.").replace(".aa.1", "")
            maps.append(ContextMap("pixel_map", "strip_gates", f"strip gate {short}", modules[name].gate(x)[0].mean(0), vrange=None, cmap="magma",
                                   caption="Strip-pooling gates inside the backbone, mean over channels: where each gated block keeps more of its features (brighter)."))
        return maps
