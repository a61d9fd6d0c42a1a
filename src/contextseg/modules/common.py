"""Building blocks shared by every head: conv-BN-ReLU, exportable adaptive pooling and resizing."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNReLU", "SeparableConvBNReLU", "AdaptiveAvgPool2d", "adaptive_avg_pool2d", "resize", "precise_dtype", "init_conv_bn", "feature_size"]


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU, the "CBR" block of the papers' heads.

    Padding keeps the spatial size: ``dilation * (kernel_size // 2)``.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` (stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        padding = (dilation * (ks[0] // 2), dilation * (ks[1] // 2))
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, ks, padding=padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise-separable CBR (mmcv's ``DepthwiseSeparableConvModule``, DeepLabV3+'s Xception-style
    layers): depthwise ``k x k`` CBR (groups = in_channels) then pointwise 1x1 CBR.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__(ConvBNReLU(in_channels, in_channels, kernel_size, dilation=dilation, groups=in_channels), ConvBNReLU(in_channels, out_channels, 1))



def _bin_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``(bins, size)``: row r averages inputs ``floor(r size / bins) <= i < ceil((r + 1) size / bins)``,
    adaptive pooling's bins, built from ``size`` (a traced, possibly symbolic, length)."""
    i = torch.arange(size, device=like.device)[None, :]
    r = torch.arange(bins, device=like.device)[:, None]
    start, end = (r * size) // bins, ((r + 1) * size + bins - 1) // bins
    return ((i >= start) & (i < end)).to(like.dtype) / (end - start).to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, output_size: int | Sequence[int | None]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``, whose bins an exported graph (``torch.export``, ONNX) can take at
    any input size: eager mode calls torch's op; while exporting, where the op's bins would be frozen
    at the traced size, it is ``M_h x M_w^T`` with averaging matrices built from the input's height and
    width (`_bin_matrix`; ``None`` keeps that axis). Same bins, same values up to rounding.

    Shape:
        ``(B, C, H, W) -> (B, C, out_h, out_w)``.
    """
    if not torch.compiler.is_exporting():
        return F.adaptive_avg_pool2d(x, output_size)
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if out_h is not None:
        x = torch.einsum("oh,bchw->bcow", _bin_matrix(x.shape[2], out_h, x), x)
    if out_w is not None:
        x = torch.einsum("pw,bchw->bchp", _bin_matrix(x.shape[3], out_w, x), x)
    return x


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` through `adaptive_avg_pool2d`: an ONNX export takes any size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.output_size)


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str = "bilinear", align_corners: bool = False) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size``: bilinear with ``align_corners=False`` (mmseg's choice)
    unless a release that a module follows aligns the corners (SPNet's mixed pooling).

    Returns ``x`` unchanged when it already has that size.
    """
    size = tuple(size)  # ints, or symbolic sizes while exporting: never int() them, which would freeze the size
    if not torch.compiler.is_compiling() and tuple(x.shape[-2:]) == tuple(int(s) for s in size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=align_corners)


def precise_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs (gradchecks, references), float32 otherwise (autocast-safe parts)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def init_conv_bn(module: nn.Module, mode: str = "fan_out") -> None:
    """mmcv's ``ConvModule`` initialisation over every layer of ``module``.

    Convolutions (1-d and 2-d, depthwise included): kaiming-normal for ReLU with ``mode``
    (``fan_out`` as mmcv, ``fan_in`` as torch's default rule and HANet's release), bias 0.
    Batch norms: weight 1, bias 0. Other layers keep their own initialisation.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def feature_size(input_size: Sequence[int], stride: int) -> tuple[int, ...]:
    """The ``(h, w)`` of a stride-``stride`` feature map of an ``input_size`` input (padded convs
    round up): ``ceil(H / stride), ceil(W / stride)``."""
    return tuple(math.ceil(int(c) / int(stride)) for c in input_size)
