"""Context Encoding (Zhang et al., "Context Encoding for Semantic Segmentation", CVPR 2018).

EncNet summarises the whole image with an Encoding layer: K learned codewords, each pixel softly
assigned to them by a scaled L2 distance, and the assignment-weighted residuals aggregated into K
encodings. Their mean predicts which classes occur (the SE loss) and gates the feature channels,
so scene context re-weights class-dependent feature maps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import ConvBNReLU, precise_dtype

__all__ = ["Encoding", "EncModule"]


class Encoding(nn.Module):
    """Encoding layer (Sec. 3.1, Eq. 2).

    Codewords ``D (K, C) ~ U(-1/sqrt(K C), 1/sqrt(K C))`` and smoothing factors ``s (K) ~ U(-1, 0)``.
    For the pixels ``X (B, N, C)``:

    - scaled L2, ``SL_ik = s_k ||x_i - d_k||^2``, computed as ``s_k (||x_i||^2 - 2 x_i . d_k + ||d_k||^2)``;
    - assignment ``a_ik = softmax_k(SL_ik)``;
    - residual encoding ``e_k = sum_i a_ik (x_i - d_k)``, computed as ``A^T X - (sum_i a_ik) d_k``.

    The matmul form never builds the (B, N, K, C) residual tensor of the naive formula. Runs in
    float32 under autocast (the expanded distance cancels badly in half precision).

    Shape:
        ``(B, C, h, w) -> (B, num_codes, C)``.
    """

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.channels, self.num_codes = channels, num_codes
        std = 1.0 / math.sqrt(num_codes * channels)
        self.codewords = nn.Parameter(torch.empty(num_codes, channels).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"Encoding expects {self.channels} channels, got {x.shape[1]}")
        dtype = precise_dtype(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = x.to(dtype).flatten(2).transpose(1, 2)  # (B, N, C)
            codes = self.codewords.to(dtype)
            dist = (feats * feats).sum(-1, keepdim=True) - 2 * feats @ codes.t() + (codes * codes).sum(-1)
            assign = torch.softmax(self.scale.to(dtype) * dist.clamp_min(0), dim=2)  # (B, N, K)
            return assign.transpose(1, 2) @ feats - assign.sum(1)[..., None] * codes  # (B, K, C)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_codes={self.num_codes}"


class EncModule(nn.Module):
    """Context Encoding Module (Sec. 3.2, Fig. 2).

    CBR 1x1 -> Encoding -> BatchNorm1d(K) -> ReLU -> mean over the K codewords = ``en`` (B, C);
    channel gate ``gamma = sigmoid(W en)`` (Eq. 3) and output ``ReLU(x + x * gamma)`` (the released
    code's residual form of ``x * gamma``).

    Shape:
        ``x (B, C, h, w) -> (encoded (B, C), gated (B, C, h, w))``.
    """

    def __init__(self, in_channels: int, num_codes: int = 32) -> None:
        super().__init__()
        self.encoding = nn.Sequential(
            ConvBNReLU(in_channels, in_channels, 1),
            Encoding(in_channels, num_codes),
            nn.BatchNorm1d(num_codes),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoding(x).mean(dim=1)  # (B, C)
        gamma = self.fc(encoded)
        return encoded, torch.relu(x + x * gamma[:, :, None, None])
