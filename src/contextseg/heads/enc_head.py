"""EncNet's decode head: CBR 3x3 (+ optional lateral fusion) -> EncModule -> cls_seg, plus the SE loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..losses.semantic_encoding import SemanticEncodingLoss
from ..modules.common import ConvBNReLU, resize
from ..modules.encoding import EncModule
from .base import ContextMap, DecodeHead, HeadOutput

__all__ = ["EncHead", "EncHeadOutput"]


class EncHeadOutput(HeadOutput, total=False):
    se_logits: torch.Tensor  # (B, K) class-presence logits of the SE branch


class EncHead(DecodeHead):
    """EncNet head (the released EncHead).

    Args:
        num_codes: K codewords of the Encoding layer (32).
        lateral: fuse C3 and C4 (each CBR 1x1 -> 512) with the head features by concat + CBR 3x3
            (the Pascal Context recipe).
        se_weight: weight of the SE loss (0.2).

    As the released EncHead (PyTorch-Encoding), the classifier's dropout is elementwise
    (``nn.Dropout(0.1)``), not channel-wise.

    Shape:
        ``features [C2, C3, C4, C5] -> {"logits": (B, K, h, w), "se_logits": (B, K)}`` at C5's size.
    """

    channel_dropout = False

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        num_codes: int = 32,
        lateral: bool = False,
        se_weight: float = 0.2,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        self.conv5 = ConvBNReLU(self.input_channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvBNReLU(c, channels, 1) for c in self.in_channels[1:3]]) if lateral else None
        self.fusion = ConvBNReLU(3 * channels, channels, 3) if lateral else None
        self.enc_module = EncModule(channels, num_codes)
        self.se_layer = nn.Linear(channels, num_classes)
        self.se_weight = se_weight
        self.se_loss = SemanticEncodingLoss(num_classes, self.ignore_index)

    def forward(self, features: Sequence[torch.Tensor]) -> EncHeadOutput:
        x = self.conv5(features[self.in_index])
        if self.lateral_convs is not None:
            laterals = [resize(conv(f), x.shape[-2:]) for conv, f in zip(self.lateral_convs, features[1:3])]
            x = self.fusion(torch.cat([x, *laterals], dim=1))
        encoded, x = self.enc_module(x)
        return {"logits": self.cls_seg(x), "se_logits": self.se_layer(encoded)}

    def losses(self, outputs: EncHeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_se": self.se_weight * self.se_loss(outputs["se_logits"], targets)}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """The class-presence probabilities ``sigmoid(se_logits)`` that the SE loss trains: which
        classes the Encoding layer's global context says the image holds."""
        presence = torch.sigmoid(self.forward(features)["se_logits"][0].float())
        return [ContextMap("class_bars", "class_presence", "class presence (SE branch)", presence,
                           caption="The class-presence probabilities of the SE branch for the whole image: the classes the Encoding layer's global context says are there; they gate the feature channels.")]
