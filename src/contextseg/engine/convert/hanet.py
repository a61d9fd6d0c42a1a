"""The released HANet Cityscapes models (shachoi/HANet, DeepLabV3+ on a deep-stem ResNet-101 at
output stride 8 with four HANet blocks, e.g. ``HANet_r101_os8_city_0.80293.pth``) -> a contextseg
``hanet`` model on ``resnet101s`` with the release's dilation rule (``contract_dilation=False``)."""

from __future__ import annotations

import os

import torch

from ...data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import Segmentor, create_model
from .reading import ConversionError, check_and_load, read_state_dict, tensor_of

__all__ = ["from_hanet", "hanet_key"]

_HANET_PREFIXES = [  # release prefix -> contextseg prefix, longest first
    ("layer0.0.", "backbone.body.conv1.0."), ("layer0.1.", "backbone.body.conv1.1."), ("layer0.3.", "backbone.body.conv1.3."),
    ("layer0.4.", "backbone.body.conv1.4."), ("layer0.6.", "backbone.body.conv1.6."), ("layer0.7.", "backbone.body.bn1."),
    ("aspp.img_conv.", "decode_head.aspp.image_pool.1."), ("aspp.features.", "decode_head.aspp.branches."),
    ("bot_aspp.", "decode_head.bottleneck."), ("bot_fine.", "decode_head.c1_bottleneck."),
    ("final1.0.", "decode_head.sep_bottleneck.0.0."), ("final1.1.", "decode_head.sep_bottleneck.0.1."),
    ("final1.3.", "decode_head.sep_bottleneck.1.0."), ("final1.4.", "decode_head.sep_bottleneck.1.1."),
    ("final2.0.", "decode_head.conv_seg."), ("dsn.0.", "aux_head.convs.0.0."), ("dsn.1.", "aux_head.convs.0.1."),
    ("dsn.4.", "aux_head.conv_seg."),
]
_HANET_BLOCK = [("attention_first.0.", "reduce.0."), ("attention_first.1.", "reduce.1."), ("attention_second.0.", "conv.0."),
                ("attention_second.1.", "conv.1."), ("attention_third.0.", "conv.3.")]
_HANET_TABLE = ".pos_emb1d_2nd.pos_layer.weight"  # the frozen positional table: rebuilt, not loaded


def hanet_key(key: str) -> str | None:
    """contextseg's name of a tensor of the released DeepV3PlusHANet (None: the positional table)."""
    if key.startswith(("layer1.", "layer2.", "layer3.", "layer4.")):
        return "backbone.body." + key
    if key.startswith("hanet") and key[5:6].isdigit():
        block, rest = key[5], key[7:]
        if rest == _HANET_TABLE[1:]:
            return None
        for old, new in _HANET_BLOCK:
            if rest.startswith(old):
                return f"decode_head.hanet.{block}.{new}{rest[len(old):]}"
    for old, new in _HANET_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return key  # unknown: reported as unmapped


def from_hanet(source: str | os.PathLike | dict, num_classes: int | None = None) -> Segmentor:
    """A released HANet model (a checkpoint path or its state dict) as a contextseg ``hanet``.

    The release's aux head (``dsn``) has a conv bias before its BatchNorm; it is folded into the
    BN's running mean (exact in eval mode; in training a BN ignores a constant shift anyway).
    """
    name = str(source) if not isinstance(source, dict) else "the state dict"
    state = read_state_dict(source) if not isinstance(source, dict) else {k[7:] if k.startswith("module.") else k: v for k, v in source.items()}
    if "final2.0.weight" not in state:
        raise ConversionError(f"{name} is not a released HANet model: it has no final2.0.weight (the classifier)")
    num_classes = num_classes or int(tensor_of(state, "final2.0.weight", name, 4, "the classifier, (classes, channels, 1, 1)").shape[0])
    if "dsn.0.bias" in state and "dsn.1.running_mean" in state:
        state = dict(state)
        bias = tensor_of(state, "dsn.0.bias", name, 1, "the aux conv's bias")
        mean = tensor_of(state, "dsn.1.running_mean", name, 1, "the aux BatchNorm's running mean")
        if bias.shape != mean.shape:
            raise ConversionError(f"{name}: dsn.0.bias {tuple(bias.shape)} and dsn.1.running_mean {tuple(mean.shape)} must have the same shape")
        state["dsn.1.running_mean"] = mean - state.pop("dsn.0.bias")
    converted, origin = {}, {}
    for key, value in state.items():
        target = hanet_key(key)
        if target is not None:
            converted[target], origin[target] = value, key
    model = create_model(
        "hanet", num_classes=num_classes, backbone="resnet101s", output_stride=8, contract_dilation=False,
        channels=256, c1_channels=48, hanet_reduction=64, hanet_rows=16, aux_channels=512,
    )
    check_and_load(model, converted, name, origin)
    if num_classes == len(CITYSCAPES_CLASSES):
        model.meta.update(classes=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE])
    model.meta.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), base_size=None, source=f"HANet release: {name}")
    return model.eval()
