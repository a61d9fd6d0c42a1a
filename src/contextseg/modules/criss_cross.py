"""Criss-Cross Attention (Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation",
ICCV 2019).

A non-local block lets every pixel attend to all H x W others; criss-cross attention lets a pixel
attend only to the H + W - 1 pixels of its own row and column. Applied twice (recurrent criss-cross
attention, R = 2), information from any pixel reaches any other through the pixel that shares a row
with one and a column with the other, at a cost of O(HW (H + W)) instead of O((HW)^2).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import precise_dtype

__all__ = ["CrissCrossAttention"]


class CrissCrossAttention(nn.Module):
    """One criss-cross attention pass (Sec. 3.2), as released (``mmcv.ops.CrissCrossAttention``).

    With Q = W_q H, K = W_k H (1x1 convs to C / ``reduction`` channels) and V = W_v H (1x1, C):

    - Eq. (1), affinity: ``d_{i,u} = Q_u . K_{i,u}`` for the pixels i of Omega_u, the column and
      the row through u; u itself is counted once (in the row: its column term is masked);
    - ``A_u = softmax_i(d_{i,u})`` over those H + W - 1 positions;
    - Eq. (2), aggregation: ``H'_u = gamma * sum_i A_{i,u} V_{i,u} + H_u``, gamma a learnt scalar
      initialised to 0 (so the block starts as the identity).

    The affinities and the softmax are computed in fp32 (float64 for float64 inputs) under any
    autocast; the (B, H, W, H + W) attention is all that is materialised, never an HW x HW map.

    Shape:
        ``x (B, C, H, W) -> (B, C, H, W)``; `attention` gives ``(B, H, W, H + W)``: for pixel
        (h, w), entries ``[:H]`` are its column (row index i), ``[H:]`` its row (column index j).
    """

    def __init__(self, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        if in_channels // reduction < 1:
            raise ValueError(f"CrissCrossAttention needs in_channels >= reduction, got {in_channels} and {reduction}")
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // reduction, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // reduction, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))  # a scalar, as mmcv's Scale

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``A (B, H, W, H + W)``: each pixel's softmax over its column then its row."""
        dtype = precise_dtype(x)
        query, key = self.query_conv(x).to(dtype), self.key_conv(x).to(dtype)
        height = x.shape[-2]
        with torch.autocast(x.device.type, enabled=False):  # Eq. (1) and the softmax in fp32
            column = torch.einsum("bchw,bciw->bhwi", query, key)  # (B, H, W, H): pixel (h, w) . (i, w)
            row = torch.einsum("bchw,bchj->bhwj", query, key)  # (B, H, W, W): pixel (h, w) . (h, j)
            itself = torch.eye(height, dtype=torch.bool, device=x.device)[:, None, :]  # (H, 1, H): i == h
            column = column.masked_fill(itself, float("-inf"))  # u once, in its row
            return torch.softmax(torch.cat([column, row], dim=-1), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[-2]
        attention = self.attention(x)
        value = self.value_conv(x)
        attention = attention.to(value.dtype)
        out = torch.einsum("bciw,bhwi->bchw", value, attention[..., :height])
        out = out + torch.einsum("bchj,bhwj->bchw", value, attention[..., height:])
        return self.gamma.to(out.dtype) * out + x

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation: PyTorch's default for the three 1x1 convs (mmcv's module
        is plain ``nn.Conv2d``, which mmseg's head init leaves alone), gamma = 0."""
        for conv in (self.query_conv, self.key_conv, self.value_conv):
            conv.reset_parameters()
        self.gamma.zero_()

    @staticmethod
    def cross_map(attention: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
        """One pixel's weights as an image: ``attention (H, W, H + W)`` of one sample, ``pixel``
        ``(row, col)`` -> ``(H, W)``, zero off its row and column."""
        height = attention.shape[0]
        row, col = pixel
        weights = attention[row, col]
        out = attention.new_zeros(attention.shape[:2])
        out[:, col] = weights[:height]
        out[row, :] += weights[height:]
        return out

    @staticmethod
    def reach_map(first: torch.Tensor, second: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
        """How much every pixel contributes to ``pixel`` after two passes, the values' mixing aside:
        ``M_j = sum_i A2_{i,u} A1_{j,i}`` over the pixels i of u's cross (Sec. 3.3: two loops reach
        the whole image). ``first``, ``second``: ``(H, W, H + W)`` attentions of the two passes."""
        height = first.shape[0]
        row, col = pixel
        down, across = second[row, col, :height], second[row, col, height:]  # weights of (i, col), (row, j)
        column_pixels, row_pixels = first[:, col], first[row]  # (H, H + W) and (W, H + W)
        out = first.new_zeros(first.shape[:2])
        out[:, col] += down @ column_pixels[:, :height]  # the column of col, seen through (i, col)
        out += down[:, None] * column_pixels[:, height:]  # each row i, seen through (i, col)
        out += (across[:, None] * row_pixels[:, :height]).T  # each column j, seen through (row, j)
        out[row, :] += across @ row_pixels[:, height:]  # the row of row, seen through (row, j)
        return out
