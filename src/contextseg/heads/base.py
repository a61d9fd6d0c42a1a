"""The decode-head base: pick inputs by stage index, end in ``cls_seg``, own extra loss terms."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..modules.common import init_conv_bn

__all__ = ["DecodeHead", "HeadOutput"]

HeadOutput = dict  # {"logits": (B, K, h, w), plus head-specific tensors such as "prior_logits"}


class DecodeHead(nn.Module):
    """Base class of every decode head.

    Subclasses build their layers in ``__init__`` and implement ``forward(features) -> HeadOutput``,
    a dict holding at least ``"logits"``. Heads whose paper adds a loss term (CPNet's affinity loss,
    EncNet's SE loss, OCRNet's object-region loss) override :meth:`losses`; the segmentor adds the
    main cross entropy itself.

    Args:
        in_channels: channels of every backbone level ``[C2, C3, C4, C5]``.
        channels: width of the head's last feature map (the input of ``cls_seg``).
        num_classes: K.
        dropout: ``cls_seg``'s dropout probability (0.1 unless a paper says otherwise); channel-wise
            (Dropout2d) unless the head sets ``channel_dropout = False``.
        in_index: which backbone level feeds the head (-1 = C5).
    """

    uses_positions = False  # HANet reads per-row image positions
    channel_dropout = True  # cls_seg drops whole channels (Dropout2d); EncNet's release drops elements

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        dropout: float = 0.1,
        in_index: int = -1,
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = in_index
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
