"""PyTorch-Encoding's deep-stem ImageNet ResNet-50/101 (``resnet50-25c4b509.pth``,
``resnet101-2a57e44d.pth``, what the SPNet and EncNet releases train from) -> a state dict of
timm's ``resnet50s``/``resnet101s``, for ``model.pretrained_backbone``."""

from __future__ import annotations

import os

import torch

from .reading import ConversionError, check_and_load, read_state_dict

__all__ = ["from_encoding_resnet"]


def from_encoding_resnet(source: str | os.PathLike | dict) -> tuple[str, dict[str, torch.Tensor]]:
    """``(timm name, state dict)`` of a PyTorch-Encoding deep-stem ResNet-50/101: the keys are
    timm's ``resnet50s``/``resnet101s`` ones already (the classifier ``fc`` is dropped); shapes are
    checked against the timm model."""
    import timm

    name = str(source) if not isinstance(source, dict) else "the state dict"
    state = read_state_dict(source) if not isinstance(source, dict) else dict(source)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    blocks = len({k.split(".")[1] for k in state if k.startswith("layer3.")})
    depth = {6: 50, 23: 101}.get(blocks)
    if depth is None:
        raise ConversionError(f"{name} is not a PyTorch-Encoding ResNet-50/101: its layer3 has {blocks} blocks (6 or 23 expected)")
    timm_name = f"resnet{depth}s"
    body = timm.create_model(timm_name, features_only=True, out_indices=(-4, -3, -2, -1))
    check_and_load(body, state, name)
    return timm_name, body.state_dict()
