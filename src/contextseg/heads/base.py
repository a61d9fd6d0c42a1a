"""The decode-head base: pick inputs by stage index, end in ``cls_seg``, own extra loss terms, and
say what its context module computed (`ContextMap`, drawn by ``contextseg.explain``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypedDict

import numpy as np
import torch
from torch import nn

from ..modules.common import init_conv_bn

__all__ = ["DecodeHead", "HeadOutput", "ContextMap", "CONTEXT_MAP_KINDS", "feature_index"]

CONTEXT_MAP_KINDS = ("pixel_map", "row_curve", "class_bars", "matrix")


class HeadOutput(TypedDict, total=False):
    """What every decode head returns: ``logits (B, K, h, w)``. A head whose losses need more
    declares its own subclass (``CPHeadOutput``, ``EncHeadOutput``, ``OCRHeadOutput``)."""

    logits: torch.Tensor


@dataclass
class ContextMap:
    """One thing a context module computed on one image, in one of four generic kinds, so that
    ``contextseg.explain`` and the demo draw any method without knowing its name:

    - ``"pixel_map"``: ``values (h, w)``, a map over the image at any resolution (drawn stretched
      over it): CPNet's prior row P of a pixel and 1 - P, an OCRNet object region, an SPNet gate.
    - ``"row_curve"``: ``values (C, rows)``, one curve per channel from the top of the image to
      the bottom (drawn as the channel mean with its 10-90 % band): HANet's height attention.
    - ``"class_bars"``: ``values (K,)``, one number per class (the largest drawn as bars):
      EncNet's class presence, OCRNet's pixel-region attention of a pixel.
    - ``"matrix"``: ``values (R, C)``, a relation between two sets that are not places in the image
      (drawn as a heat map beside the image, rows against columns): DANet's channel attention.

    Args:
        kind: one of `CONTEXT_MAP_KINDS`.
        group: maps of one group are drawn in one figure (``<stem>_<group>.png``).
        title: what the map is, in the paper's words.
        values: float32 numpy array of the kind's shape.
        pixel: the query pixel ``(x, y)`` in the image the model saw, for a map that belongs to one
            pixel (a row of CPNet's prior, OCRNet's attention of a pixel); None otherwise.
        label: the class the map belongs to (an OCRNet object region), or None. Class maps are
            drawn for the classes the model predicts on the image.
        vrange: the value range of the colour scale or axis; None = the map's own.
        cmap: matplotlib colour map of a ``pixel_map``.
        caption: one line saying what the group's picture shows for this method (the first
            non-empty caption of a group is drawn under its picture).
    """

    kind: str
    group: str
    title: str
    values: np.ndarray
    pixel: tuple[int, int] | None = None
    label: int | None = None
    vrange: tuple[float, float] | None = (0.0, 1.0)
    cmap: str = "inferno"
    caption: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CONTEXT_MAP_KINDS:
            raise ValueError(f"ContextMap kind must be one of {CONTEXT_MAP_KINDS}, got {self.kind!r}")
        if isinstance(self.values, torch.Tensor):
            self.values = self.values.detach().float().cpu().numpy()
        dims = {"pixel_map": 2, "row_curve": 2, "class_bars": 1, "matrix": 2}[self.kind]
        if self.values.ndim != dims:
            raise ValueError(f"a {self.kind} ContextMap holds a {dims}-d array, got shape {self.values.shape}")


def feature_index(pixels: Sequence[tuple[int, int]], image_size: Sequence[int], feature_size: Sequence[int]) -> list[int]:
    """Flat indices ``row * w + col`` of the cells of an ``(h, w)`` feature map that hold the image
    pixels ``(x, y)`` of an ``image_size`` ``(H, W)`` input: ``row = y h // H``, ``col = x w // W``."""
    (big_h, big_w), (h, w) = image_size, feature_size
    return [(y * h // big_h) * w + (x * w // big_w) for x, y in pixels]


class DecodeHead(nn.Module):
    """Base class of every decode head.

    Subclasses build their layers in ``__init__`` and implement ``forward(features) -> HeadOutput``,
    a dict holding at least ``"logits"``. Heads whose paper adds a loss term (CPNet's affinity loss,
    EncNet's SE loss, OCRNet's object-region loss) override `losses`; the segmentor adds the
    main cross entropy itself.

    Every head takes the same arguments in the same order: ``in_channels`` and ``num_classes``
    positionally, then keyword-only ``channels``, the method's own options, ``dropout`` and
    ``in_index``, and last the three the segmentor supplies to every head, declared once here.

    Args:
        in_channels: channels of every backbone level ``[C2, C3, C4, C5]``.
        num_classes: K.
        channels: width of the head's last feature map (the input of ``cls_seg``).
        dropout: ``cls_seg``'s dropout probability (0.1 unless a paper says otherwise); channel-wise
            (Dropout2d) unless the head sets ``channel_dropout = False``.
        in_index: which backbone level feeds the head (-1 = C5).
        output_stride: the backbone's output stride (ASPP's rates follow from it).
        ignore_index: label value the head's own losses skip (255).
        class_weight: per-class weights of the head's own cross entropies (OCRNet's regions).
    """

    uses_positions = False  # HANet reads per-row image positions
    channel_dropout = True  # cls_seg drops whole channels (Dropout2d); EncNet's release drops elements
    loss_in_forward = False  # forward(features, targets=...) computes its loss in the same pass (fused CPNet)

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int,
        dropout: float = 0.1,
        in_index: int = -1,
        output_stride: int = 8,
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = in_index
        self.output_stride = output_stride
        self.ignore_index = ignore_index
        self.class_weight = list(class_weight) if class_weight is not None else None
        drop = nn.Dropout2d if self.channel_dropout else nn.Dropout
        self.dropout = drop(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    @property
    def input_channels(self) -> int:
        """Channels of the level picked by ``in_index``."""
        return self.in_channels[self.in_index]

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout + 1x1 conv: ``(B, channels, h, w) -> (B, K, h, w)``."""
        return self.conv_seg(self.dropout(x))

    def losses(self, outputs: HeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted head-specific loss terms by name (none for the baselines)."""
        return {}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """What this head's context module computes on one image (batch of 1): the hook that
        ``contextseg.explain`` and the demo draw. ``features`` are the backbone's levels of an
        ``image_size`` ``(H, W)`` input, ``pixels`` the query pixels ``(x, y)`` in it, ``inputs``
        the head's extra forward inputs (HANet's ``positions``). A baseline returns ``[]``.
        Called under ``torch.no_grad()`` in eval mode."""
        return []

    @torch.no_grad()
    def init_weights(self) -> None:
        """mmsegmentation's initialisation of a decode head, which the released CPNet, EncNet and
        OCRNet heads share:

        1. every convolution kaiming-normal (``fan_out``, ReLU) with zero bias, every BatchNorm
           weight 1 and bias 0 (mmcv ``ConvModule.init_weights``);
        2. each classifier ``conv_seg`` (this head's and any nested head's) N(0, 0.01), bias 0;
        3. sub-modules whose release initialises them otherwise (HANet's blocks) then apply their
           own ``init_weights``. Linear layers and the Encoding layer keep their own init.
        """
        init_conv_bn(self, mode="fan_out")
        for module in self.modules():
            if isinstance(module, DecodeHead):
                nn.init.normal_(module.conv_seg.weight, std=0.01)
                nn.init.zeros_(module.conv_seg.bias)
            elif callable(getattr(module, "init_weights", None)):
                module.init_weights()
