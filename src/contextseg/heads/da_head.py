"""DANet's decode head: a position attention branch and a channel attention branch on C5, each
CBR 3x3 -> attention -> CBR 3x3, summed -> cls_seg; each branch also has its own classifier, whose
cross entropy is a loss term (mmsegmentation's ``DAHead``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..losses import CrossEntropyLoss
from ..modules.common import ConvBNReLU, resize
from ..modules.dual_attention import ChannelAttention, PositionAttention
from .base import ContextMap, DecodeHead, HeadOutput, feature_index

__all__ = ["DAHead", "DAHeadOutput"]


class DAHeadOutput(HeadOutput, total=False):
    pam_logits: torch.Tensor  # (B, K, h, w) the position attention branch's own prediction
    cam_logits: torch.Tensor  # (B, K, h, w) the channel attention branch's own prediction


class DAHead(DecodeHead):
    """The dual attention head (Sec. 3.4): ``pam_in_conv`` (CBR 3x3 C5 -> ``channels``),
    `PositionAttention` with ``pam_channels`` keys,
    ``pam_out_conv`` (CBR 3x3); the same with `ChannelAttention`;
    the two summed -> ``cls_seg`` (dropout 0.1). Each branch's features also go through the same
    dropout to their own 1x1 classifier, supervised by cross entropy with weight ``pam_weight`` /
    ``cam_weight`` (1.0, as the main output, in the release and mmsegmentation).

    Shape:
        ``features[in_index] (B, C, h, w) -> {"logits", "pam_logits", "cam_logits": (B, K, h, w)}``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        pam_channels: int = 64,
        pam_weight: float = 1.0,
        cam_weight: float = 1.0,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        c_in = self.input_channels
        self.pam_in_conv = ConvBNReLU(c_in, channels, 3)
        self.pam = PositionAttention(channels, pam_channels)
        self.pam_out_conv = ConvBNReLU(channels, channels, 3)
        self.pam_conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.cam_in_conv = ConvBNReLU(c_in, channels, 3)
        self.cam = ChannelAttention()
        self.cam_out_conv = ConvBNReLU(channels, channels, 3)
        self.cam_conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.pam_weight, self.cam_weight = pam_weight, cam_weight
        self.branch_loss = CrossEntropyLoss(self.ignore_index, self.class_weight)

    @torch.no_grad()
    def init_weights(self) -> None:
        """mmseg's init (`DecodeHead.init_weights`); the branch classifiers are plain
        ``nn.Conv2d`` that mmseg's head init (``conv_seg`` only) leaves at PyTorch's default."""
        super().init_weights()
        self.pam_conv_seg.reset_parameters()
        self.cam_conv_seg.reset_parameters()

    def forward(self, features: Sequence[torch.Tensor]) -> DAHeadOutput:
        x = features[self.in_index]
        pam = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return {"logits": self.cls_seg(pam + cam), "pam_logits": self.pam_conv_seg(self.dropout(pam)), "cam_logits": self.cam_conv_seg(self.dropout(cam))}

    def losses(self, outputs: DAHeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        size = targets.shape[-2:]
        return {"loss_pam": self.pam_weight * self.branch_loss(resize(outputs["pam_logits"], size), targets),
                "loss_cam": self.cam_weight * self.branch_loss(resize(outputs["cam_logits"], size), targets)}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """For each query pixel, its position attention over the image (Eq. 1's row: which pixels
        it gathers from); for the image, the channel attention matrix (Eq. 3, the release's form)."""
        x = features[self.in_index]
        pam_in = self.pam_in_conv(x)
        h, w = pam_in.shape[-2:]
        index = torch.tensor(feature_index(pixels, image_size, (h, w)), dtype=torch.long)
        rows = self.pam.attention(pam_in, index)[0] if len(pixels) else []
        maps = [ContextMap("pixel_map", "position_attention", f"position attention of ({px}, {py})", row.view(h, w), pixel=(px, py), vrange=None,
                           caption="For each query pixel (cyan dot): its position attention, the weight with which it gathers each pixel's features (brighter = more).")
                for (px, py), row in zip(pixels, rows)]
        channel = self.cam.attention(self.cam_in_conv(x))[0]
        maps.append(ContextMap("matrix", "channel_attention", "channel attention (row: a channel, its weights over the channels)", channel, vrange=None,
                                caption="Channel attention of the image: row j holds channel j's weights over the channels it mixes in (the release's form favours channels unlike it)."))
        return maps
