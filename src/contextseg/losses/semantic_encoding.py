"""EncNet's Semantic Encoding loss (Zhang et al., CVPR 2018, Sec. 3.2): BCE on class presence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SemanticEncodingLoss", "class_presence"]


def class_presence(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """``t (B, K)``: 1 where class k occurs in image b's labels, ignore dropped (vectorised).

    Shape:
        ``labels (B, H, W)`` int -> ``(B, K)`` float.
    """
    flat = labels.flatten(1).long()
    ignored = flat == ignore_index
    bad = ~ignored & ((flat < 0) | (flat >= num_classes))
    if bad.any():
        raise ValueError(f"labels hold values {sorted(set(flat[bad].tolist()))[:5]} outside 0..{num_classes - 1} that are not the ignore index {ignore_index}")
    idx = torch.where(ignored, torch.full_like(flat, num_classes), flat)
    presence = torch.zeros(flat.shape[0], num_classes + 1, device=flat.device)
    presence.scatter_(1, idx, 1.0)
    return presence[:, :num_classes]


class SemanticEncodingLoss(nn.Module):
    """BCE-with-logits of the SE logits against class presence, mean over B*K.

    Shape:
        ``se_logits (B, K), labels (B, H, W) -> scalar``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def forward(self, se_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if se_logits.shape != (labels.shape[0], self.num_classes):
            raise ValueError(f"se_logits must be (B, {self.num_classes}), got {tuple(se_logits.shape)}")
        target = class_presence(labels, self.num_classes, self.ignore_index).to(se_logits.dtype)
        return F.binary_cross_entropy_with_logits(se_logits, target)
