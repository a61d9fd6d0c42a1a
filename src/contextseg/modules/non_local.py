"""Non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018), embedded Gaussian.

A convolution sees a neighbourhood; a non-local operation computes the response at a position as a
weighted sum of the features at all positions, the weights a function of how the two positions'
features relate. With the embedded Gaussian the weights are a softmax of dot products of two
embeddings, self-attention over the H x W positions, at a cost of O((HW)^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import ConvBNReLU, precise_dtype

__all__ = ["NonLocal2d"]


class NonLocal2d(nn.Module):
    """The embedded Gaussian non-local block (Sec. 3.2-3.3, Eq. 1-3), as mmcv's ``NonLocal2d``
    (``mode="embedded_gaussian"``, no sub-sampling), which mmsegmentation's ``NLHead`` uses.

    With theta, phi and g 1x1 convolutions (with bias) from C to C' = C // ``reduction`` channels,
    over the N = H x W positions:

    - Eq. (1) with Eq. (3): ``y_i = (1 / C(x)) sum_j exp(theta(x_i)^T phi(x_j) / s) g(x_j)``,
      ``C(x) = sum_j exp(theta(x_i)^T phi(x_j) / s)``, i.e. a softmax over j; ``s = sqrt(C')`` when
      ``use_scale`` (mmcv's default), else 1 (the paper);
    - Eq. (6), the residual: ``z_i = W_z y_i + x_i``, ``W_z`` a 1x1 convolution C' -> C (no bias)
      followed by batch norm (``conv_out``) whose weight and bias start at 0, so that the block is
      the identity at initialisation (Sec. 3.3).

    The softmax and the weighted sum run in fp32 under any autocast (float64 for float64 inputs)
    through ``scaled_dot_product_attention``, which never builds the N x N map where the backend
    has a fused kernel; `attention` builds the rows asked for, for explain.

    Shape:
        ``x (B, C, H, W) -> z (B, C, H, W)``; `attention` gives ``(B, n, N)``.
    """

    def __init__(self, in_channels: int, reduction: int = 2, use_scale: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.reduction = reduction
        self.use_scale = use_scale
        self.inter_channels = max(in_channels // reduction, 1)  # C'
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.conv_out = ConvBNReLU(self.inter_channels, in_channels, 1, act=False)  # W_z: conv (no bias) + BN
        self.init_weights()

    @property
    def scale(self) -> float:
        """``1 / s``: the factor of the dot products before the softmax."""
        return self.inter_channels**-0.5 if self.use_scale else 1.0

    @torch.no_grad()
    def init_weights(self) -> None:
        """mmcv's initialisation (``init_weights(std=0.01, zeros_init=True)``): theta, phi and g
        N(0, 0.01) with zero bias; ``conv_out``'s convolution kaiming-normal (fan_out, mmcv's
        ``ConvModule``) and its batch norm weight and bias 0, so that the block starts as the identity."""
        for conv in (self.g, self.theta, self.phi):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.kaiming_normal_(self.conv_out[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv_out[1].weight)
        nn.init.zeros_(self.conv_out[1].bias)

    def _embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = precise_dtype(x)
        flat = [conv(x).flatten(2).transpose(1, 2).to(dtype) for conv in (self.theta, self.phi, self.g)]
        return flat[0], flat[1], flat[2]  # theta(x), phi(x), g(x): (B, N, C') each

    def attention(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n, N)``: the weights ``f(x_i, x_j) / C(x)`` over j of the positions i in ``index``
        (flat ``row * W + col``; all N if None)."""
        theta, phi, _ = self._embeddings(x)
        if index is not None:
            theta = theta[:, index]
        with torch.autocast(x.device.type, enabled=False):
            return torch.softmax(theta @ phi.transpose(1, 2) * self.scale, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, phi, g = self._embeddings(x)
        with torch.autocast(x.device.type, enabled=False):  # Eq. (1) and (3): softmax_j(theta_i . phi_j / s) g_j
            y = F.scaled_dot_product_attention(theta[:, None], phi[:, None], g[:, None], scale=self.scale)[:, 0]  # (B, N, C')
        y = y.transpose(1, 2).reshape(x.shape[0], self.inter_channels, *x.shape[2:]).to(x.dtype)
        return x + self.conv_out(y)  # Eq. (6): z = W_z y + x
