"""Object-Contextual Representations (Yuan et al., "Object-Contextual Representations for Semantic
Segmentation", ECCV 2020).

OCR describes each pixel by the objects around it: soft object regions (coarse class maps from an
auxiliary head) pool the pixel features into one representation per region, and every pixel then
attends over those K region representations; the resulting object context is fused with the pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ConvBNReLU, precise_dtype, resize

__all__ = ["SpatialGather", "ObjectContextBlock"]


class SpatialGather(nn.Module):
    """Object region representations (Eq. 2): ``f_k = sum_i softmax_i(scale * m_ki) x_i``.

    The softmax runs over spatial positions, separately for each region (class) k.

    Shape:
        ``feats (B, C, h, w), region_logits (B, K, h', w') -> (B, C, K, 1)``; region logits of
        another size are resized bilinearly to ``(h, w)``.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def weights(self, feats: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        """Each region's spatial softmax: ``(B, K, N)``, N = h*w of ``feats``."""
        region_logits = resize(region_logits, feats.shape[-2:])
        return torch.softmax(self.scale * region_logits.flatten(2).to(precise_dtype(feats)), dim=2).to(feats.dtype)

    def forward(self, feats: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        weights = self.weights(feats, region_logits)  # (B, K, N)
        regions = torch.bmm(weights, feats.flatten(2).transpose(1, 2))  # (B, K, C)
        return regions.transpose(1, 2).unsqueeze(3)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ObjectContextBlock(nn.Module):
    """Pixel-region attention (Eq. 3-4): the object context of every pixel.

    query phi = two CBR 1x1 (C -> key -> key) on the pixels; key psi = two CBR 1x1 on the regions;
    value delta = one CBR 1x1 on the regions; ``w_ik = softmax_k(phi(x_i) . psi(f_k) / sqrt(key))``;
    context ``y_i = rho(sum_k w_ik delta(f_k))`` with rho = CBR 1x1 key -> C. With ``scale > 1`` the
    queries are computed on max-pooled pixels and the context upsampled back (openseg's option).

    Shape:
        ``pixels (B, C, h, w), regions (B, C, K, 1) -> (B, C, h, w)``.
    """

    def __init__(self, in_channels: int, key_channels: int, scale: int = 1) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.pool = nn.MaxPool2d(scale) if scale > 1 else nn.Identity()
        self.query = nn.Sequential(ConvBNReLU(in_channels, key_channels, 1), ConvBNReLU(key_channels, key_channels, 1))
        self.key = nn.Sequential(ConvBNReLU(in_channels, key_channels, 1), ConvBNReLU(key_channels, key_channels, 1))
        self.value = ConvBNReLU(in_channels, key_channels, 1)
        self.out = ConvBNReLU(key_channels, in_channels, 1)

    def attention(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Pixel-region attention ``w_ik``: ``(B, N, K)`` over the (pooled) pixels."""
        query = self.query(self.pool(pixels)).flatten(2).transpose(1, 2)  # (B, N, key)
        key = self.key(regions).flatten(2)  # (B, key, K)
        return torch.softmax(torch.bmm(query, key) * self.key_channels**-0.5, dim=-1)

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        h, w = self.pool(pixels).shape[-2:]
        sim = self.attention(pixels, regions)  # (B, N, K)
        value = self.value(regions).flatten(2).transpose(1, 2)  # (B, K, key)
        context = torch.bmm(sim, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return resize(self.out(context), pixels.shape[-2:])
