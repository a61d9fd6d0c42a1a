"""Dense-prediction backbones: any timm model with ``features_only`` support.

The wrapper returns the last four feature levels C2..C5 (ResNet layer1..layer4, HRNet's four
branches) and dilates the network to ``output_stride`` 8 or 16 where timm can (ResNet family:
OS 8 = layer3 dilation 2 and layer4 dilation 4, no multi-grid; OS 16 dilates layer4 only).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TimmBackbone", "load_backbone_weights"]

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_STRIP_PREFIXES = ("module.", "backbone.body.", "backbone.", "body.", "encoder.")


class TimmBackbone(nn.Module):
    """A timm feature extractor returning ``[C2, C3, C4, C5]``.

    Args:
        name: any timm model name that supports ``features_only`` (``resnet50d``, ``hrnet_w48``, ...).
        output_stride: 8, 16 or 32. Ignored (with a warning) by backbones that cannot dilate, such as
            HRNet, whose branches stay at strides 4/8/16/32.
        pretrained: ``None``/``False`` random init; ``True`` the timm hub weights (needs internet);
            a path to a local ``.pth``/``.pt``/``.safetensors`` state dict of the timm model.
        pad_multiple: pad inputs to a multiple of this and crop the features back. ``None`` picks
            32 for HRNet (its fuse layers need exact powers of two) and no padding otherwise.
        contract_dilation: the first block of a dilated ResNet stage keeps the previous stage's
            dilation (timm, torchvision and mmseg do this). ``False`` dilates every block of the
            stage alike, as the HANet release (``variant D``) does.
        fuse_upsample: how HRNet's fuse layers upsample a lower-resolution branch: ``"nearest"``
            (timm, the HRNet release) or ``"bilinear"`` (mmsegmentation's HRNet, align_corners=False,
            which its OCRNet-HRNet zoo weights were trained with).

    Shape:
        ``(B, 3, H, W) -> [(B, C_i, ceil(H / r_i), ceil(W / r_i)) for the four levels]`` with
        ``C_i = self.channels[i]`` and ``r_i = self.reductions[i]``.
    """

    def __init__(
        self,
        name: str = "resnet50d",
        output_stride: int = 8,
        pretrained: bool | str | os.PathLike | None = None,
        pad_multiple: int | None = None,
        contract_dilation: bool = True,
        fuse_upsample: str = "nearest",
    ) -> None:
        super().__init__()
        if fuse_upsample not in ("nearest", "bilinear"):
            raise ValueError(f"fuse_upsample must be 'nearest' or 'bilinear', got {fuse_upsample!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        if not timm.is_model(name):  # accepts pretrained tags such as resnet50d.ra2_in1k
            raise ValueError(
                f"backbone {name!r} is not a timm model name; try e.g. 'resnet50d', 'resnet101d', "
                "'resnet18d', 'hrnet_w18', 'hrnet_w48' (see timm.list_models())"
            )
        self.name = name
        kwargs: dict = {"features_only": True, "out_indices": (-4, -3, -2, -1)}
        if name.startswith("hrnet"):
            kwargs["feature_location"] = ""  # the raw branches (18/36/72/144 for W18), not the "incre" ones
        use_hub = pretrained is True
        body = None
        if output_stride != 32:
            try:
                body = timm.create_model(name, pretrained=use_hub, output_stride=output_stride, **kwargs)
            except (TypeError, AssertionError, ValueError):
                log.warning("backbone %s cannot dilate; output_stride=%s ignored", name, output_stride)
        if body is None:
            body = timm.create_model(name, pretrained=use_hub, **kwargs)
        self.body = body
        self.channels: list[int] = list(body.feature_info.channels())
        self.reductions: list[int] = list(body.feature_info.reduction())
        self.output_stride = self.reductions[-1]
        if pad_multiple is None:
            pad_multiple = 32 if name.startswith("hrnet") else 1
        self.pad_multiple = pad_multiple
        if not contract_dilation:
            _dilate_first_blocks(self.body)
        self.fuse_upsample = fuse_upsample
        if fuse_upsample != "nearest":
            upsamples = [m for m in self.body.modules() if isinstance(m, nn.Upsample)]
            if not upsamples:
                raise ValueError(f"fuse_upsample={fuse_upsample!r} is an HRNet option; backbone {name!r} has no fuse layers")
            for m in upsamples:
                m.mode, m.align_corners = fuse_upsample, False
        if pretrained not in (None, False, True):
            load_backbone_weights(self.body, pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.body(x)
        if ph or pw:
            feats = [f[..., : math.ceil(h / r), : math.ceil(w / r)] for f, r in zip(feats, self.reductions)]
        return feats


def _dilate_first_blocks(body: nn.Module) -> None:
    """Give the 3x3 convolutions of each dilated stage's first block the stage's own dilation."""
    stages = [getattr(body, f"layer{i}", None) for i in (2, 3, 4)]
    if any(stage is None for stage in stages):
        raise ValueError("contract_dilation=False needs a ResNet backbone with layer1..layer4")
    for stage in stages:
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        dilation = max(m.dilation[0] for m in convs)
        for m in stage[0].modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.dilation[0] < dilation:
                m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


def load_backbone_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a local state dict (``.pth``/``.pt``/``.bin``/``.safetensors``) into ``module``.

    Accepts a bare state dict, a ``{"state_dict" | "model": ...}`` wrapper (timm's loader unwraps it)
    and keys prefixed by ``module.``/``backbone.``/``backbone.body.`` (a contextseg checkpoint).
    Classifier weights the feature extractor lacks are ignored; a file with no matching key is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_backbone: no such file {str(path)!r}")
    if path.suffix not in _WEIGHT_SUFFIXES:
        raise ValueError(f"pretrained_backbone: {str(path)!r} should end in one of {', '.join(_WEIGHT_SUFFIXES)}")
    from timm.models import load_state_dict

    from .weights_budget import check_safetensors_file, check_torch_file

    # what the file would make the loader allocate (a compressed or forged archive, a forged header length), before it loads
    (check_safetensors_file if path.suffix == ".safetensors" else check_torch_file)(path, "pretrained_backbone")
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # a pickle with code, a truncated or foreign file
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ValueError(f"pretrained_backbone: cannot read {str(path)!r} as a state dict of tensors ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained_backbone: {str(path)!r} is not a state dict of tensors")
    own = module.state_dict()
    for prefix in _STRIP_PREFIXES:
        if not any(k in own for k in state) and any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    matched = {k: v for k, v in state.items() if k in own}
    if not matched:
        raise ValueError(
            f"pretrained_backbone: no tensor in {str(path)!r} matches the backbone "
            f"(file keys look like {sorted(state)[:3]}, the backbone expects e.g. {sorted(own)[:3]})"
        )
    shape_errors = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in matched.items() if v.shape != own[k].shape]
    if shape_errors:
        raise ValueError(f"pretrained_backbone: shape mismatch in {str(path)!r}: " + "; ".join(shape_errors[:5]))
    missing = sorted(set(own) - set(matched))
    module.load_state_dict(matched, strict=False)
    log.info("loaded %d/%d backbone tensors from %s (%d missing)", len(matched), len(own), path, len(missing))
    if missing:
        log.warning("pretrained_backbone %s lacks %d tensors, e.g. %s", path, len(missing), missing[:3])
