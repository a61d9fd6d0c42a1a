"""Pixel-wise cross entropy with ignore index, class weights and online hard example mining."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    """Cross entropy averaged over the valid (non-ignored) pixels, optionally with OHEM.

    Args:
        ignore_index: label value that contributes nothing (255).
        class_weight: optional per-class weights (length K); the mean is then weighted, as in
            ``F.cross_entropy(weight=...)``: ``sum_i w_{y_i} l_i / sum_i w_{y_i}``.
        ohem_thresh: online hard example mining (Shrivastava et al., CVPR 2016, as PSPNet/OCRNet/
            CPNet's Cityscapes recipes use it): keep only pixels whose predicted probability of their
            true class is below this threshold (0.7 in the recipes) ...
        ohem_min_kept: ... but never fewer than this many pixels per batch (the hardest ones).

    An all-ignore batch gives a loss of exactly 0 (still attached to the graph), never NaN.

    Shape:
        ``logits (B, K, H, W), labels (B, H, W) int64 -> scalar``.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if class_weight.ndim != 1:
                raise ValueError(f"class_weight must be a 1-D sequence of K weights, got shape {tuple(class_weight.shape)}")
        self.register_buffer("class_weight", class_weight, persistent=False)
        if ohem_thresh is not None and not 0.0 < ohem_thresh <= 1.0:
            raise ValueError(f"ohem_thresh must be in (0, 1], got {ohem_thresh}")
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = int(ohem_min_kept)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"CrossEntropyLoss expects logits (B, K, H, W) and labels (B, H, W); got {tuple(logits.shape)} "
                f"and {tuple(labels.shape)}"
            )
        weight = self.class_weight
        if weight is not None and weight.numel() != logits.shape[1]:
            raise ValueError(f"class_weight has {weight.numel()} entries but the logits have {logits.shape[1]} classes")
        logits = logits.float()
        pixel_loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=self.ignore_index, reduction="none")
        valid = labels != self.ignore_index
        if self.ohem_thresh is not None:
            valid = valid & self._hard_pixels(logits, labels, valid)
        safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
        denom = weight[safe_labels][valid].sum() if weight is not None else valid.sum().to(pixel_loss.dtype)
        denom = torch.where(denom > 0, denom, torch.ones_like(denom))
        return (pixel_loss * valid).sum() / denom

    @torch.no_grad()
    def _hard_pixels(self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mask of the kept pixels: true-class probability < thresh, at least ``min_kept`` of them."""
        safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
        prob = torch.softmax(logits, dim=1).gather(1, safe_labels.unsqueeze(1)).squeeze(1)
        prob = torch.where(valid, prob, torch.full_like(prob, 2.0))  # ignored pixels are never "hard"
        keep = prob < self.ohem_thresh
        num_valid = int(valid.sum())
        min_kept = min(self.ohem_min_kept, num_valid)
        if int(keep.sum()) < min_kept:
            hardest = prob.flatten().topk(min_kept, largest=False).indices
            keep = torch.zeros_like(keep).flatten().index_fill_(0, hardest, True).view_as(keep)
        return keep
