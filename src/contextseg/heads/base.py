"""The decode-head base: pick inputs by stage index, end in ``cls_seg``, own extra loss terms."""

from __future__ import annotations

from typing import Sequence, TypedDict

import torch
from torch import nn

from ..modules.common import init_conv_bn
from ..modules.context_prior import PriorFactors

__all__ = ["DecodeHead", "HeadOutput"]

class HeadOutput(TypedDict, total=False):
    """What a decode head returns: ``logits`` always, plus the tensors its own losses need."""

    logits: torch.Tensor  # (B, K, h, w)
    prior_logits: torch.Tensor  # CPNet (plain): (B, N, N) pre-sigmoid context prior map
    prior: PriorFactors  # CPNet (fused): the same map in factored form, never materialised
    loss_affinity: torch.Tensor  # CPNet (fused, given targets): the Affinity Loss of its forward pass
    se_logits: torch.Tensor  # EncNet: (B, K) class-presence logits of the SE branch
    object_regions: torch.Tensor  # OCRNet: (B, K, h, w) soft object regions


class DecodeHead(nn.Module):
    """Base class of every decode head.

    Subclasses build their layers in ``__init__`` and implement ``forward(features) -> HeadOutput``,
    a dict holding at least ``"logits"``. Heads whose paper adds a loss term (CPNet's affinity loss,
    EncNet's SE loss, OCRNet's object-region loss) override :meth:`losses`; the segmentor adds the
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
