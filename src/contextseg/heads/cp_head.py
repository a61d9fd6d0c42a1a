"""CPNet's decode head: Context Prior Layer -> CBR 3x3 -> cls_seg, plus the Affinity Loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..losses.affinity import AffinityLoss
from ..modules.common import ConvBNReLU, precise_dtype
from ..modules.context_prior import ContextPriorLayer, PriorFactors
from .base import ContextMap, DecodeHead, HeadOutput, feature_index

__all__ = ["CPHead", "CPHeadOutput"]

CPNET_CAPTION = ("Each row is a query pixel (cyan dot). Left: its row of the context prior P, the pixels the model counts as its own "
                 "class (bright = same class); right: 1 - P, the pixels it takes inter-class context from.")


class CPHeadOutput(HeadOutput, total=False):
    """CPHead's output: ``logits`` and, by form, the context prior map it is supervised on."""

    prior_logits: torch.Tensor  # plain: (B, N, N) pre-sigmoid context prior map, N = h w
    prior: PriorFactors  # fused: the same map in factored form, never materialised
    loss_affinity: torch.Tensor  # fused, given targets: the Affinity Loss of the same forward pass


class CPHead(DecodeHead):
    """CPNet head (the authors' released CPHead).

    Args:
        prior_size: feature size of the training crop, ``(h, w)`` (60x60 for 480 crops at OS 8,
            64x64 for 512, 96x96 for 768; non-square allowed).
        prior_channels: width of the aggregated features X~ (512).
        kernel_size: k of the Aggregation Module's separable convolutions (11).
        prior_groups: groups of the 1x1 prior conv (1 released, 16 in the authors' dev code).
        affinity_weight: weight of the Affinity Loss in the total (1.0).
        unary_weight: lambda_u inside it (1.0).
        global_weight: lambda_g inside it (1.0).
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

    def forward(self, features: Sequence[torch.Tensor], targets: torch.Tensor | None = None) -> CPHeadOutput:
        x = features[self.in_index]
        row_loss = None
        if targets is not None and self.context_prior.fused:
            row_loss = self.affinity_loss.rows(targets, self.prior_size, precise_dtype(x))
        x, prior, loss = self.context_prior.forward_with_loss(x, row_loss)
        outputs: CPHeadOutput = {"logits": self.cls_seg(self.bottleneck(x))}
        outputs["prior" if isinstance(prior, PriorFactors) else "prior_logits"] = prior
        if loss is not None:
            outputs["loss_affinity"] = loss
        return outputs

    def losses(self, outputs: CPHeadOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = outputs.get("loss_affinity")
        if loss is None:
            loss = self.affinity_loss(outputs["prior"] if "prior" in outputs else outputs["prior_logits"], targets, self.prior_size)
        return {"loss_affinity": self.affinity_weight * loss}

    def context_maps(self, features: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]], image_size: Sequence[int], **inputs) -> list[ContextMap]:
        """For each query pixel i, its row of the context prior map ``P_i = sigmoid(prior logits)_i``
        over the ``prior_size`` grid (the pixels the network believes share i's class; the intra-class
        context averages them) and ``1 - P_i`` (the inter-class context). The input must be the
        training crop's size (``image_size / output_stride == prior_size``)."""
        outputs = self.forward(features)
        index = feature_index(pixels, image_size, self.prior_size)
        logits = outputs["prior"].logits(index)[0] if "prior" in outputs else outputs["prior_logits"][0, index]
        rows = torch.sigmoid(logits.float()).view(len(index), *self.prior_size)
        maps = []
        for (x, y), row in zip(pixels, rows):
            maps.append(ContextMap("pixel_map", "prior", f"intra-class prior P of ({x}, {y})", row, pixel=(x, y), caption=CPNET_CAPTION))
            maps.append(ContextMap("pixel_map", "prior", "inter-class 1 - P", 1 - row, pixel=(x, y), cmap="viridis", caption=CPNET_CAPTION))
        return maps
