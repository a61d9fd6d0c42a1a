"""Dual attention (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019).

Two self-attention modules side by side on the same features: the position attention module lets
every pixel gather the features of all pixels, weighted by how similar they are; the channel
attention module lets every channel map gather all channel maps, weighted by how they co-occur
over the image. Their outputs are summed (in DANet's head, after a convolution each).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import precise_dtype

__all__ = ["PositionAttention", "ChannelAttention"]


class PositionAttention(nn.Module):
    """The position attention module (PAM, Sec. 3.2, Eq. 1-2), as released (mmseg's ``PAM``).

    With B = W_q A, C = W_k A (1x1 convs with bias to ``key_channels``, the paper's C/8) and
    D = W_v A (1x1, C channels), over the N = H x W positions:

    - Eq. (1): ``s_ji = exp(B_j . C_i) / sum_i exp(B_j . C_i)``, how much position i matters to j;
    - Eq. (2): ``E_j = alpha * sum_i s_ji D_i + A_j``, alpha a learnt scalar initialised to 0.

    The softmax and the weighted sum run in fp32 under any autocast (float64 for float64 inputs)
    through ``scaled_dot_product_attention`` with scale 1, which never builds the N x N map where
    the backend has a fused kernel; `attention` builds the rows asked for, for explain.

    Shape:
        ``A (B, C, H, W) -> E (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, key_channels: int) -> None:
        super().__init__()
        self.query_project = nn.Conv2d(in_channels, key_channels, 1)
        self.key_project = nn.Conv2d(in_channels, key_channels, 1)
        self.value_project = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))  # alpha, a scalar as mmcv's Scale

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation: PyTorch's default for the three 1x1 convs (mmseg builds
        them as plain ``nn.Conv2d`` and its head init leaves them alone), alpha = 0."""
        for conv in (self.query_project, self.key_project, self.value_project):
            conv.reset_parameters()
        self.gamma.zero_()

    def _projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = precise_dtype(x)
        flat = [p(x).flatten(2).transpose(1, 2).to(dtype) for p in (self.query_project, self.key_project, self.value_project)]
        return flat[0], flat[1], flat[2]  # (B, N, key), (B, N, key), (B, N, C)

    def attention(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``s (B, n, N)``: Eq. (1)'s rows of the positions ``index`` (flat ``row * W + col``; all N if None)."""
        query, key, _ = self._projections(x)
        if index is not None:
            query = query[:, index]
        with torch.autocast(x.device.type, enabled=False):
            return torch.softmax(query @ key.transpose(1, 2), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self._projections(x)
        with torch.autocast(x.device.type, enabled=False):
            context = F.scaled_dot_product_attention(query[:, None], key[:, None], value[:, None], scale=1.0)[:, 0]  # (B, N, C)
        context = context.transpose(1, 2).reshape(x.shape).to(x.dtype)
        return self.gamma.to(x.dtype) * context + x


class ChannelAttention(nn.Module):
    """The channel attention module (CAM, Sec. 3.3, Eq. 3-4), as released (mmseg's ``CAM``).

    Over the channel maps A_i (flattened to N = H x W values):

    - the release's Eq. (3): ``x_ji = softmax_i(max_k(A_j . A_k) - A_j . A_i)``; the paper writes
      ``softmax_i(A_j . A_i)``. Softmax ignores the per-row constant, so the release's form is
      ``softmax_i(-A_j . A_i)``: a channel listens most to the channels least like it (kept, as
      the released weights and mmsegmentation's are trained with it);
    - Eq. (4): ``E_j = beta * sum_i x_ji A_i + A_j``, beta a learnt scalar initialised to 0.

    No parameters besides beta. The C x C energies sum over all N positions and run in fp32 under
    any autocast (float64 for float64 inputs).

    Shape:
        ``A (B, C, H, W) -> E (B, C, H, W)``; `attention` gives ``(B, C, C)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(()))  # beta

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``X (B, C, C)``: row j is channel j's weights over the channels."""
        flat = x.flatten(2).to(precise_dtype(x))
        with torch.autocast(x.device.type, enabled=False):
            energy = flat @ flat.transpose(1, 2)
            return torch.softmax(energy.amax(-1, keepdim=True) - energy, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention(x)
        with torch.autocast(x.device.type, enabled=False):
            out = (attention @ x.flatten(2).to(attention.dtype)).reshape(x.shape).to(x.dtype)
        return self.gamma.to(x.dtype) * out + x
