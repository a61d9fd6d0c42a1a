"""Weights of the official releases as contextseg models and backbones.

- :func:`from_hanet`: a released HANet Cityscapes model (shachoi/HANet, DeepLabV3+ on a deep-stem
  ResNet-101 at output stride 8 with four HANet blocks, e.g. ``HANet_r101_os8_city_0.80293.pth``)
  -> a contextseg ``hanet`` model on ``resnet101s`` with the release's dilation rule
  (``contract_dilation=False``), ready for ``eval``, ``predict``, ``explain`` and fine-tuning.
- :func:`from_encoding_resnet`: PyTorch-Encoding's deep-stem ImageNet ResNet-50/101
  (``resnet50-25c4b509.pth``, ``resnet101-2a57e44d.pth``, what the SPNet and EncNet releases train
  from) -> a state dict of timm's ``resnet50s``/``resnet101s``, for ``model.pretrained_backbone``.

Every tensor is mapped by name through an explicit table; a file with a tensor the table does not
know, a tensor it lacks, or a shape that does not fit is refused with the names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..models import Segmentor, create_model

__all__ = ["from_hanet", "from_encoding_resnet", "hanet_key", "read_state_dict", "ConversionError"]


class ConversionError(ValueError):
    """A checkpoint that does not match the layout it is converted from; the message names tensors."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``torch.load(weights_only=True)``), unwrapped from a
    ``state_dict``/``model`` entry and from DataParallel's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {str(path)!r} as a checkpoint of tensors ({' '.join(str(exc).split())[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{str(path)!r} holds no state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_and_load(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, origin: dict[str, str] | None = None) -> None:
    """Load ``state`` into ``model`` or refuse naming every problem; ``origin`` gives the file's
    own name of each converted key."""
    own = model.state_dict()
    origin = origin or {}

    def named(key: str) -> str:
        return f"{origin[key]} (-> {key})" if origin.get(key, key) != key else key

    missing = sorted(set(own) - set(state))
    unexpected = sorted(named(k) for k in set(state) - set(own))
    shapes = [f"{named(k)}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} expected" for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if unexpected:
            parts.append(f"unmapped tensors {unexpected[:5]}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
        if missing:
            parts.append(f"tensors the file lacks {missing[:5]}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if shapes:
            parts.append(f"mismatched shapes {shapes[:3]}")
        raise ConversionError(f"{source} does not match the layout it is converted from: " + "; ".join(parts))
    model.load_state_dict(state)


# -- HANet -----------------------------------------------------------------------------------

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
    num_classes = num_classes or int(state["final2.0.weight"].shape[0])
    if "dsn.0.bias" in state and "dsn.1.running_mean" in state:
        state = dict(state)
        state["dsn.1.running_mean"] = state["dsn.1.running_mean"] - state.pop("dsn.0.bias")
    converted, origin = {}, {}
    for key, value in state.items():
        target = hanet_key(key)
        if target is not None:
            converted[target], origin[target] = value, key
    model = create_model(
        "hanet", num_classes=num_classes, backbone="resnet101s", output_stride=8, contract_dilation=False,
        channels=256, c1_channels=48, hanet_reduction=64, hanet_rows=16, aux_channels=512,
    )
    _check_and_load(model, converted, name, origin)
    if num_classes == len(CITYSCAPES_CLASSES):
        model.meta.update(classes=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE])
    model.meta.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), base_size=None, source=f"HANet release: {name}")
    return model.eval()


# -- PyTorch-Encoding ResNets ----------------------------------------------------------------


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
    _check_and_load(body, state, name)
    return timm_name, body.state_dict()


# -- mmsegmentation --------------------------------------------------------------------------

#: contextseg options that rebuild each mmsegmentation 1.x model's layout (its ``*_r50-d8`` /
#: ``*_r101-d8`` configs): ResNetV1c at output stride 8, the head widths mmseg uses, ASPP with a
#: 3x3 bottleneck, DeepLabV3+ with depthwise-separable convs.
MMSEG_MODELS: dict[str, dict] = {
    "fcn": dict(channels=512, num_convs=2, concat_input=True, aux_channels=256),
    "pspnet": dict(channels=512, aux_channels=256),
    "deeplabv3": dict(channels=512, bottleneck_kernel=3, aux_channels=256),
    "deeplabv3plus": dict(channels=512, c1_channels=48, bottleneck_kernel=3, separable=True, aux_channels=256),
    "encnet": dict(channels=512, num_codes=32, aux_channels=256),
    "ocrnet": dict(channels=512, key_channels=256, region_channels=256),
}
#: mmsegmentation's dataset names -> (contextseg dataset, classes, palette)
MMSEG_DATASETS = ("ade20k", "cityscapes", "pascal_context", "pascal_context_59")

_MMSEG_RENAMES = [  # (mmseg prefix, contextseg prefix) after "backbone."/"decode_head."/"auxiliary_head." are split off
    # backbone: ResNetV1c's deep stem -> timm's resnet*c
    ("stem.0.", "body.conv1.0."), ("stem.1.", "body.conv1.1."), ("stem.3.", "body.conv1.3."), ("stem.4.", "body.conv1.4."),
    ("stem.6.", "body.conv1.6."), ("stem.7.", "body.bn1."),
    # heads
    ("psp_modules.", "ppm.stages."), ("image_pool.", "aspp.image_pool."), ("aspp_modules.", "aspp.branches."),
    ("enc_module.encoding_project.", "enc_module.encoding.0."), ("enc_module.encoding.0.", "enc_module.encoding.1."),
    ("enc_module.encoding.1.", "enc_module.encoding.2."),
    ("1.object_context_block.query_project.", "object_context.query."), ("1.object_context_block.key_project.", "object_context.key."),
    ("1.object_context_block.value_project.", "object_context.value."), ("1.object_context_block.out_project.", "object_context.out."),
    ("1.object_context_block.bottleneck.", "fuse."), ("1.bottleneck.", "pixel_conv."), ("1.conv_seg.", "conv_seg."), ("0.", "region_head."),
]
_MMSEG_SIGNATURES = {  # a tensor prefix only that model's head has
    "fcn": "decode_head.conv_cat.", "pspnet": "decode_head.psp_modules.", "deeplabv3plus": "decode_head.c1_bottleneck.",
    "deeplabv3": "decode_head.aspp_modules.", "encnet": "decode_head.enc_module.", "ocrnet": "decode_head.1.object_context_block.",
}
_MMSEG_MODULE_PARTS = {"conv": "0", "bn": "1", "depthwise_conv": "0", "pointwise_conv": "1"}  # ConvModule / DepthwiseSeparableConvModule


def mmseg_key(key: str, model: str, hrnet: bool = False) -> str:
    """contextseg's name of the tensor an mmsegmentation 1.x checkpoint calls ``key`` (``hrnet``:
    the backbone is an HRNet, whose names are timm's already, and OCRNet's region head is mmseg's
    1x1 FCNHead on the concatenated branches)."""
    part, _, rest = key.partition(".")
    if part == "backbone":
        if hrnet or rest.startswith("layer"):
            return "backbone.body." + rest
    elif hrnet and model == "ocrnet" and rest.startswith("0."):
        return "decode_head.region_head." + {"0.convs.0.conv.": "0.0.", "0.convs.0.bn.": "0.1.", "0.conv_seg.": "1."}.get(rest[: rest.rfind(".") + 1], "?.") + rest.rsplit(".", 1)[1]
    elif part in ("decode_head", "auxiliary_head"):
        if model == "encnet" and part == "decode_head" and rest.startswith("bottleneck."):
            rest = "conv5." + rest[len("bottleneck."):]
        part = "aux_head" if part == "auxiliary_head" else part
    else:
        return key
    for old, new in _MMSEG_RENAMES:
        if rest.startswith(old) and (model == "ocrnet" or not old[0].isdigit()):
            rest = new + rest[len(old):]
            break
    *path, leaf = rest.split(".")
    path = [_MMSEG_MODULE_PARTS.get(p, p) for p in path]
    return ".".join([part, *path, leaf])


def _read_mmseg_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of an mmsegmentation checkpoint, read with ``weights_only=True``.

    mmengine checkpoints may pickle a few of mmengine's own objects in ``meta`` (a message hub's
    history buffers, config objects): they are read as inert stand-ins that hold their state and
    run no code; numpy arrays in ``meta`` are allowed as torch allows them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        safe = [_inert_class(name) for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if name.startswith("mmengine.")]
        safe += _numpy_globals()
        with torch.serialization.safe_globals(safe):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {str(path)!r} as an mmsegmentation checkpoint ({' '.join(str(exc).split())[:300]})") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{str(path)!r} holds no state dict of tensors")
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    return state, meta


def _inert_class(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")

    class Inert:
        """Stands in for an mmengine object in a checkpoint's meta: keeps its state, runs nothing."""

        def __setstate__(self, state):
            self.state = state

    Inert.__module__, Inert.__name__, Inert.__qualname__ = module, name, name
    return Inert


def _numpy_globals() -> list:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return []
    reconstruct = getattr(getattr(np, "_core", np.core), "multiarray")._reconstruct
    return [reconstruct, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in (np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_)}]


def from_mmseg(source: str | os.PathLike | dict, model: str, dataset: str | None = None, backbone: str | None = None, **options) -> Segmentor:
    """An mmsegmentation 1.x checkpoint of FCN, PSPNet, DeepLabV3(+), EncNet or OCRNet (ResNetV1c
    backbones, the ``*_r50-d8`` / ``*_r101-d8`` zoo models; OCRNet also on HRNet-W18/W48, the
    ``ocrnet_hr18``/``ocrnet_hr48`` models, with mmseg's bilinear fuse upsampling) as a contextseg model.

    ResNetV1c is timm's ``resnet50c``/``resnet101c`` (depth read from the file); the head options
    mirror mmseg's layouts (:data:`MMSEG_MODELS`, overridable by ``options``); every tensor is
    mapped by name (:func:`mmseg_key`) and any that is unmapped, missing or of another shape is
    refused by name. The v0.x zoo files (``download.openmmlab.com/mmsegmentation/v0.5/...``) use the
    same names. Classes and palette come from the checkpoint's ``meta.dataset_meta`` (1.x) or
    ``meta.CLASSES``/``PALETTE`` (0.x), else from ``dataset``, else from the class count (19:
    Cityscapes, 150: ADE20K, 60/59: Pascal Context); mean/std are mmseg's (ImageNet's).
    """
    from ..data.palettes import (ADE20K_CLASSES, ADE20K_PALETTE, PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE,
                                 PASCAL_CONTEXT_60_CLASSES, PASCAL_CONTEXT_60_PALETTE)

    if model not in MMSEG_MODELS:
        raise ConversionError(f"model {model!r} has no mmsegmentation converter; choose one of {', '.join(MMSEG_MODELS)}")
    if dataset is not None and dataset not in MMSEG_DATASETS:
        raise ConversionError(f"dataset {dataset!r} is not one of {', '.join(MMSEG_DATASETS)}")
    if isinstance(source, dict):
        name, state, meta = "the state dict", dict(source.get("state_dict", source)), dict(source.get("meta") or {})
    else:
        name = str(source)
        state, meta = _read_mmseg_checkpoint(source)
    def holds(kind: str) -> bool:
        return any(k.startswith(_MMSEG_SIGNATURES[kind]) for k in state) and not (kind == "deeplabv3" and holds("deeplabv3plus"))

    if not holds(model):
        looks = next((kind for kind in _MMSEG_SIGNATURES if holds(kind)), None)
        raise ConversionError(f"{name} is not an mmsegmentation {model} checkpoint: it has no {_MMSEG_SIGNATURES[model]}* tensors"
                              + (f"; it looks like a {looks} checkpoint (--model {looks})" if looks else ""))
    classifier = "decode_head.1.conv_seg.weight" if model == "ocrnet" else "decode_head.conv_seg.weight"
    num_classes = int(state[classifier].shape[0])
    hrnet = "backbone.stage2.0.branches.0.0.conv1.weight" in state
    if hrnet and backbone is None:
        width = int(state["backbone.stage2.0.branches.0.0.conv1.weight"].shape[0])
        backbone = f"hrnet_w{width}"
    if backbone is None:
        blocks = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
        depth = {6: 50, 23: 101}.get(blocks)
        if depth is None or "backbone.stem.0.weight" not in state:
            raise ConversionError(f"{name}: the backbone is not a ResNetV1c-50/101 (layer3 has {blocks} blocks, stem.0 {'present' if 'backbone.stem.0.weight' in state else 'absent'})")
        backbone = f"resnet{depth}c"
    kwargs = dict(MMSEG_MODELS[model], **options)
    if model != "ocrnet" and not any(k.startswith("auxiliary_head.") for k in state):
        kwargs["aux_head"] = False
    if hrnet:  # the branches at strides 4-32, fused bilinearly as mmseg's HRNet does
        kwargs = {k: v for k, v in kwargs.items() if k != "region_channels"}
        kwargs.setdefault("hrnet_upsample", "bilinear")
    converted, origin = {}, {}
    for key, value in state.items():
        target = mmseg_key(key, model, hrnet)
        converted[target], origin[target] = value, key
    net = create_model(model, num_classes=num_classes, backbone=backbone, output_stride=32 if hrnet else 8, **kwargs)
    _check_and_load(net, converted, name, origin)
    dataset_meta = meta.get("dataset_meta") or {"classes": meta.get("CLASSES"), "palette": meta.get("PALETTE")}  # 1.x, else 0.x zoo files
    known = {"ade20k": (ADE20K_CLASSES, ADE20K_PALETTE), "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
             "pascal_context": (PASCAL_CONTEXT_60_CLASSES, PASCAL_CONTEXT_60_PALETTE), "pascal_context_59": (PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE)}
    classes, palette = dataset_meta.get("classes"), dataset_meta.get("palette")
    if classes is None and dataset is not None:
        classes, palette = known[dataset]
    if classes is None:
        classes, palette = next(((c, p) for c, p in known.values() if len(c) == num_classes), (None, None))
    if classes is not None and len(classes) == num_classes:
        net.meta.update(classes=[str(c) for c in classes], palette=[[int(v) for v in c] for c in palette][:num_classes] if palette is not None else None)
    net.meta.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), source=f"mmsegmentation: {name}")
    return net.eval()
