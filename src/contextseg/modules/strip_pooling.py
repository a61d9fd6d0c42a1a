"""Strip Pooling (Hou et al., "Strip Pooling: Rethinking Spatial Pooling for Scene Parsing", CVPR 2020).

Square pooling windows mix in irrelevant regions when objects are long and thin. Strip pooling
pools along a whole row or a whole column (a 1 x W or H x 1 window), so a pixel gathers long-range
context along one axis while keeping a narrow footprint along the other. SPNet uses it twice: the
strip pooling module (SPM) gates features inside the backbone's residual blocks, and the mixed
pooling module (MPM) combines pyramid (short-range) and strip (long-range) pooling in the head.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import AdaptiveAvgPool2d, ConvBNReLU, init_conv_bn, resize

__all__ = ["StripPooling", "MixedPooling", "insert_strip_pooling"]


def _conv_bn(in_channels: int, out_channels: int, kernel_size) -> nn.Sequential:
    ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, ks, padding=(ks[0] // 2, ks[1] // 2), bias=False), nn.BatchNorm2d(out_channels))


class StripPooling(nn.Module):
    """Strip pooling module, SPM (Sec. 3.2, Fig. 2): a C -> C gate.

    ``y_h = BN(conv_{3x1}(mean over width))`` (B, C, h, 1) and ``y_w = BN(conv_{1x3}(mean over
    height))`` (B, C, 1, w) are broadcast to (h, w) and summed (Eq. 3); the gate is
    ``sigmoid(conv_{1x1}(ReLU(y)))`` and the output ``x * gate`` (Eq. 4).

    Shape:
        ``(B, C, h, w) -> (B, C, h, w)``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv_h = _conv_bn(in_channels, in_channels, (3, 1))
        self.conv_w = _conv_bn(in_channels, in_channels, (1, 3))
        self.fuse = nn.Conv2d(in_channels, in_channels, 1, bias=True)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the released ResNet initialises the SPM it holds: every conv weight
        ``N(0, sqrt(2 / (k_h k_w C_out)))`` (kaiming-normal, ``fan_out``), BN weight 1 and bias 0;
        the gate's bias keeps torch's default ``U(-1/sqrt(C), 1/sqrt(C))`` (the release never touches it)."""
        bias = self.fuse.bias.clone()
        init_conv_bn(self, mode="fan_out")
        self.fuse.bias.copy_(bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate ``sigmoid(conv_1x1(ReLU(y_h + y_w)))``: ``(B, C, h, w)`` in (0, 1)."""
        strips = self.conv_h(x.mean(dim=3, keepdim=True)) + self.conv_w(x.mean(dim=2, keepdim=True))
        return torch.sigmoid(self.fuse(torch.relu(strips)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MixedPooling(nn.Module):
    """Mixed pooling module, MPM (Sec. 3.3, Fig. 3; the released ``StripPooling`` head block).

    With C' = C / 4: x1 = CBR 1x1 C -> C' feeds the short-range pyramid branch (conv-BN 3x3 on x1,
    plus adaptive average pooling to each of ``pool_sizes`` -> conv-BN 3x3 -> bilinear upsampling;
    summed, ReLU, CBR 3x3); x2 = CBR 1x1 C -> C' feeds the long-range strip branch (pool to 1 x w ->
    conv-BN 1x3, pool to h x 1 -> conv-BN 3x1, both upsampled; summed, ReLU, CBR 3x3). The two are
    concatenated, conv-BN 1x1 2C' -> C, and added to the input: ``ReLU(x + merged)``. The pooled
    maps are upsampled bilinearly with ``align_corners=True``, as the release does (a strip
    broadcast is the same under either rule).

    ``pool_sizes`` (20, 12) are the paper's absolute sizes for 60x60 features (480 crops); give
    smaller ones (ints or (h, w) pairs) for smaller feature maps.

    Shape:
        ``(B, C, h, w) -> (B, C, h, w)``.
    """

    def __init__(self, in_channels: int, pool_sizes: Sequence[int | Sequence[int]] = (20, 12)) -> None:
        super().__init__()
        c = in_channels // 4
        self.pool_sizes = [tuple(s) if isinstance(s, (list, tuple)) else (int(s), int(s)) for s in pool_sizes]
        self.reduce_short = ConvBNReLU(in_channels, c, 1)
        self.reduce_long = ConvBNReLU(in_channels, c, 1)
        self.short_local = _conv_bn(c, c, 3)
        self.short_pools = nn.ModuleList(nn.Sequential(AdaptiveAvgPool2d(s), _conv_bn(c, c, 3)) for s in self.pool_sizes)
        self.long_w = nn.Sequential(AdaptiveAvgPool2d((1, None)), _conv_bn(c, c, (1, 3)))
        self.long_h = nn.Sequential(AdaptiveAvgPool2d((None, 1)), _conv_bn(c, c, (3, 1)))
        self.short_out = ConvBNReLU(c, c, 3)
        self.long_out = ConvBNReLU(c, c, 3)
        self.merge = _conv_bn(2 * c, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x1, x2 = self.reduce_short(x), self.reduce_long(x)
        # the release upsamples the pooled maps with align_corners=True (its ``up_kwargs``)
        short = self.short_local(x1) + sum(resize(pool(x1), size, align_corners=True) for pool in self.short_pools)
        long = self.long_w(x2).expand(-1, -1, *size) + self.long_h(x2).expand(-1, -1, *size)
        merged = self.merge(torch.cat([self.short_out(torch.relu(short)), self.long_out(torch.relu(long))], dim=1))
        return torch.relu(x + merged)


def insert_strip_pooling(resnet: nn.Module) -> list[str]:
    """Put an SPM into a timm ResNet's residual blocks, as SPNet does (Sec. 3.4, released resnet.py).

    Every block of ``layer4`` and the last block of ``layer1``-``layer3`` get an SPM right after
    the 3x3 convolution + BN + ReLU and before the last 1x1 convolution (bottleneck), i.e. between
    the two 3x3 convolutions of a basic block; its width is the block's inner width. Implemented by
    wrapping the block's ``aa`` slot (an identity unless anti-aliasing is on), so timm's forward is
    unchanged. The new weights start from random init. Returns the names of the modified blocks.
    """
    layers = [getattr(resnet, f"layer{i}", None) for i in range(1, 5)]
    if any(layer is None for layer in layers) or not all(hasattr(layer[-1], "aa") for layer in layers):
        raise ValueError("strip pooling (spm=True) needs a timm ResNet backbone (resnet18d/50d/101d, ...) with layer1..layer4")
    chosen = [(4, j) for j in range(len(layers[3]))] + [(i, len(layers[i - 1]) - 1) for i in (1, 2, 3)]
    names = []
    for i, j in sorted(chosen):
        block = layers[i - 1][j]
        width = block.conv3.in_channels if hasattr(block, "conv3") else block.conv2.in_channels
        block.aa = nn.Sequential(block.aa, StripPooling(width))
        names.append(f"layer{i}.{j}")
    return names
