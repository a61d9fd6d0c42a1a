"""CPNet's decode head: Context Prior Layer -> CBR 3x3 -> cls_seg, plus the Affinity Loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..losses.affinity import AffinityLoss
from ..modules.common import ConvBNReLU, precise_dtype
from ..modules.context_prior import ContextPriorLayer, PriorFactors
from .base import DecodeHead, HeadOutput

__all__ = ["CPHead"]


class CPHead(DecodeHead):
    """CPNet head (the authors' released CPHead).

    Args:
        prior_size: feature size of the training crop, ``(h, w)`` (60x60 for 480 crops at OS 8,
            64x64 for 512, 96x96 for 768; non-square allowed).
        prior_channels: width of the aggregated features X~ (512).
        kernel_size: k of the Aggregation Module's separable convolutions (11).
        prior_groups: groups of the 1x1 prior conv (1 released, 16 in the authors' dev code).
        affinity_weight: weight of the Affinity Loss in the total (1.0).
        unary_weight, global_weight: lambda_u and lambda_g inside it (1.0 each).
        ignore_mode: ``"extra_class"`` (released) or ``"mask"`` (PriorLoss).
        fused: never store the N x N prior map (default): the Context Prior Layer works in row
            blocks and, in training, computes the Affinity Loss on the same blocks in its forward
            pass (the segmentor hands the head its targets). ``False``: the plain reference form,
            which returns the dense prior logits; both give equal outputs, losses and gradients.

    Shape:
        ``features[-1] (B, C5, h, w) -> {"logits": (B, K, h, w), "prior_logits": (B, h*w, h*w)}``
        (plain) or ``{"logits", "prior": PriorFactors}`` (fused), plus ``"loss_affinity"`` when the
        fused head was given targets.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        prior_size: Sequence[int] | int = (64, 64),
        prior_channels: int = 512,
        kernel_size: int = 11,
        prior_groups: int = 1,
        affinity_weight: float = 1.0,
        unary_weight: float = 1.0,
        global_weight: float = 1.0,
        ignore_mode: str = "extra_class",
        fused: bool = True,
        dropout: float = 0.1,
        in_index: int = -1,
        **shared: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, channels=channels, dropout=dropout, in_index=in_index, **shared)
        self.context_prior = ContextPriorLayer(self.input_channels, prior_channels, prior_size, kernel_size, prior_groups, fused=fused)
        self.prior_size = self.context_prior.prior_size
        self.bottleneck = ConvBNReLU(self.context_prior.out_channels, channels, 3)
        self.affinity_weight = affinity_weight
        self.affinity_loss = AffinityLoss(num_classes, self.ignore_index, unary_weight, global_weight, ignore_mode)

    @property
    def loss_in_forward(self) -> bool:
        return self.context_prior.fused

    def forward(self, features: Sequence[torch.Tensor], targets: torch.Tensor | None = None) -> HeadOutput:
        x = features[self.in_index]
        row_loss = None
        if targets is not None and self.context_prior.fused:
            row_loss = self.affinity_loss.rows(targets, self.prior_size, precise_dtype(x))
        x, prior, loss = self.context_prior.forward_with_loss(x, row_loss)
        outputs: HeadOutput = {"logits": self.cls_seg(self.bottleneck(x))}
        outputs["prior" if isinstance(prior, PriorFactors) else "prior_logits"] = prior
        if loss is not None:
            outputs["loss_affinity"] = loss
        return outputs

    def losses(self, outputs: HeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = outputs.get("loss_affinity")
        if loss is None:
            loss = self.affinity_loss(outputs["prior"] if "prior" in outputs else outputs["prior_logits"], targets, self.prior_size)
        return {"loss_affinity": self.affinity_weight * loss}
