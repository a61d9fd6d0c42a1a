"""Context Prior (Yu et al., "Context Prior for Scene Segmentation", CVPR 2020).

CPNet learns, for every pixel, which other pixels belong to its own class: a prior map P (N x N,
N = h*w) supervised by the ideal affinity map of the labels (:class:`~contextseg.losses.AffinityLoss`).
The intra-class context P X~ and the inter-class context (1 - P) X~ aggregate the features of an
Aggregation Module (spatially separable, depthwise convolutions with a large kernel) and are
concatenated with the backbone features. Structure follows the authors' released CPHead.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ConvBNReLU, precise_dtype

__all__ = ["AggregationModule", "ContextPriorLayer"]


class AggregationModule(nn.Module):
    """Aggregation Module (Sec. 3.3): CBR 3x3 in->out, then two parallel branches of spatially
    separable depthwise convolutions, (k x 1 -> 1 x k) and (1 x k -> k x 1), summed, BN, ReLU.

    Shape:
        ``(B, in_channels, h, w) -> (B, out_channels, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 11) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        k, pad, c = kernel_size, kernel_size // 2, out_channels
        self.reduce_conv = ConvBNReLU(in_channels, out_channels, 3)
        self.branch_a = nn.Sequential(
            nn.Conv2d(c, c, (k, 1), padding=(pad, 0), groups=c), nn.Conv2d(c, c, (1, k), padding=(0, pad), groups=c)
        )
        self.branch_b = nn.Sequential(
            nn.Conv2d(c, c, (1, k), padding=(0, pad), groups=c), nn.Conv2d(c, c, (k, 1), padding=(pad, 0), groups=c)
        )
        self.norm = nn.BatchNorm2d(c)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce_conv(x)
        return self.act(self.norm(self.branch_a(x) + self.branch_b(x)))


class ContextPriorLayer(nn.Module):
    """Context Prior Layer (Sec. 3.2-3.3).

    1. X~ = AggregationModule(X) (prior_channels wide).
    2. Prior logits: 1x1 conv prior_channels -> N (no bias, ``prior_groups``) + BN(N); channel j at
       position i becomes entry (i, j), so row i is pixel i's prior over all N pixels;
       P = sigmoid(logits) (Eq. 1 of the released code, computed in float32).
    3. Eq. (6): intra context Y = P X~ / N and inter context Y- = (1 - P) X~ / N (divided by N, not
       by row sums), each reshaped to (B, prior_channels, h, w) and passed through CBR 1x1.
    4. Output ``concat[X, Y, Y-]``.

    The prior is tied to the feature size: an input of another size is an error.

    Shape:
        ``x (B, C, h, w) -> (features (B, C + 2 * prior_channels, h, w), prior_logits (B, h*w, h*w))``.
    """

    def __init__(self, in_channels: int, prior_channels: int = 512, prior_size: tuple[int, int] | int = (64, 64), kernel_size: int = 11, prior_groups: int = 1) -> None:
        super().__init__()
        h, w = (prior_size, prior_size) if isinstance(prior_size, int) else (int(prior_size[0]), int(prior_size[1]))
        self.prior_size = (h, w)
        n = h * w
        if prior_channels % prior_groups or n % prior_groups:
            raise ValueError(f"prior_groups={prior_groups} must divide prior_channels={prior_channels} and N={n}")
        self.aggregation = AggregationModule(in_channels, prior_channels, kernel_size)
        self.prior_conv = nn.Sequential(nn.Conv2d(prior_channels, n, 1, groups=prior_groups, bias=False), nn.BatchNorm2d(n))
        self.intra_conv = ConvBNReLU(prior_channels, prior_channels, 1)
        self.inter_conv = ConvBNReLU(prior_channels, prior_channels, 1)
        self.out_channels = in_channels + 2 * prior_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        if (h, w) != self.prior_size:
            raise ValueError(
                f"ContextPriorLayer got a {h}x{w} feature map but its prior_size is {self.prior_size[0]}x{self.prior_size[1]}; "
                "the prior is tied to the training crop: run inference in sliding windows of the training crop "
                f"(contextseg eval --mode slide), or build the model with prior_size=({h}, {w})"
            )
        value = self.aggregation(x)
        n = h * w
        with torch.autocast(device_type=x.device.type, enabled=False):
            value32 = value.to(precise_dtype(value))
            prior_logits = self.prior_conv(value32).view(b, n, n).transpose(1, 2)  # [b, i, j] = channel j at pixel i
            prior = torch.sigmoid(prior_logits)
            v = value32.flatten(2).transpose(1, 2)  # (B, N, C1)
            intra = torch.bmm(prior, v)  # P X~
            inter = v.sum(1, keepdim=True) - intra  # (1 - P) X~ without building 1 - P
            intra = (intra / n).transpose(1, 2).reshape(b, -1, h, w)
            inter = (inter / n).transpose(1, 2).reshape(b, -1, h, w)
        intra = self.intra_conv(intra.to(value.dtype))
        inter = self.inter_conv(inter.to(value.dtype))
        return torch.cat([x, intra, inter], dim=1), prior_logits
