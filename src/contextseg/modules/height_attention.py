"""Height-driven Attention (Choi et al., "Cars Can't Fly up in the Sky: Improving Urban-Scene
Segmentation via Height-driven Attention Networks", CVPR 2020).

In street scenes the class distribution depends strongly on the image row: sky at the top, road at
the bottom. HANet pools a lower-level feature map over the width into a few row descriptors, adds a
sinusoidal encoding of each row's absolute height, and predicts a per-row channel attention that
re-weights a higher-level feature map, broadcast along the width.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import adaptive_avg_pool2d, init_conv_bn

__all__ = ["HeightAttention", "height_encoding"]


def height_encoding(rows: int, channels: int) -> torch.Tensor:
    """Sinusoidal table (rows, channels): sin on even, cos on odd channels, plus 1 (range [0, 2]).

    ``angle(p, i) = p / cycle ** (2 * (i // 2) / channels)`` with the released code's short cycle,
    10 when ``channels > 50`` and 100 otherwise (not the usual 10000: there are only a few rows).
    """
    cycle = 10 if channels > 50 else 100
    pos = np.arange(rows, dtype=np.float64)[:, None]
    idx = np.arange(channels)[None, :]
    angle = pos / np.power(cycle, 2 * (idx // 2) / channels)
    table = np.where(idx % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.from_numpy(table).float() + 1.0  # float32, then +1 in float32: the release's exact table


class HeightAttention(nn.Module):
    """HANet block (Sec. 3, Fig. 3): per-row channel attention of a higher-level map from a lower one.

    1. Width-wise average pooling of ``low`` with its height resampled to ``rows`` (16): (B, C_l, 16).
    2. Dropout 0.1; Conv1d 1x1 C_l -> m = ceil(C_l / reduction) (no bias), BN1d, ReLU.
    3. Add the frozen sinusoidal height encoding of each row (Eq. 6). The table has ``rows + 1``
       entries (17, as the release: padded rows and training noise reach entry 16); pooled row r
       looks up ``floor(rows * position)`` of the image row ``floor(r * H / rows)`` (nearest
       neighbour, the release's rule), where ``position`` is that row's top edge in the original
       image; in training the index gets ``floor(N(0, 0.5))`` clamped to [-2, 2] and the result is
       clamped to [0, rows].
    4. Conv1d k3 m -> 2m, BN1d, ReLU; Conv1d k3 2m -> C_h; sigmoid (Eq. 4-5).
    5. Linear interpolation from ``rows`` to the height of ``high``.

    ``positions (B, H)`` gives each row of the input image (or crop, or window) its top edge in the
    original image as a fraction in [0, 1] (``r / H_original``: crops and sliding windows keep their
    true heights); None means the input spans the whole image evenly.

    Shape:
        ``low (B, C_l, h_l, w_l), high (B, C_h, h_h, w_h), positions (B, H) -> attention
        (B, C_h, h_h, 1)``; the caller applies ``high * attention``.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 64, rows: int = 16, dropout: float = 0.1, position_noise: float = 0.5) -> None:
        super().__init__()
        m = math.ceil(in_channels / reduction)
        self.rows = rows
        self.position_noise = position_noise
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else nn.Identity()
        self.reduce = nn.Sequential(nn.Conv1d(in_channels, m, 1, bias=False), nn.BatchNorm1d(m), nn.ReLU(inplace=True))
        self.register_buffer("encoding", height_encoding(rows + 1, m), persistent=False)
        self.conv = nn.Sequential(nn.Conv1d(m, 2 * m, 3, padding=1), nn.BatchNorm1d(2 * m), nn.ReLU(inplace=True), nn.Conv1d(2 * m, out_channels, 3, padding=1))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's ``initialize_weights``: every Conv1d (the last one, which feeds the sigmoid,
        included) kaiming-normal with torch's default ``fan_in`` mode for ReLU and zero bias; BN 1, 0."""
        init_conv_bn(self, mode="fan_in")

    def row_index(self, positions: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """Entry of the encoding table for each of the ``rows`` pooled rows: (B, rows) int64."""
        if positions is None:
            index = torch.arange(self.rows, device=device).expand(batch, self.rows)
        else:  # nearest: pooled row r takes image row floor(r * H / rows), as the release
            pooled = F.interpolate(positions[:, None].float(), size=self.rows, mode="nearest")[:, 0]
            index = (pooled * self.rows).floor().long()
        if self.training and self.position_noise > 0:
            noise = torch.floor(torch.randn(index.shape, device=device) * self.position_noise).clamp(-2, 2).long()
            index = index + noise
        return index.clamp(0, self.rows)

    def forward(self, low: torch.Tensor, high: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is not None and (positions.ndim != 2 or positions.shape[0] != low.shape[0]):
            raise ValueError(f"positions must be (B, H) with B = {low.shape[0]} (one value per image row), got {tuple(positions.shape)}")
        pooled = adaptive_avg_pool2d(low, (self.rows, 1))[..., 0]  # (B, C_l, rows); any height when exported
        z = self.reduce(self.dropout(pooled))
        index = self.row_index(positions, low.shape[0], low.device)
        z = z + self.encoding[index].transpose(1, 2).to(z.dtype)  # (B, m, rows)
        attention = torch.sigmoid(self.conv(z))  # (B, C_h, rows)
        attention = F.interpolate(attention, size=high.shape[2], mode="linear", align_corners=False)
        return attention[..., None]
