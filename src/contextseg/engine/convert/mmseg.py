"""mmsegmentation 1.x (and 0.x zoo) checkpoints -> contextseg models, every tensor mapped by name.

Which models: those whose class declares its mmseg layout (`contextseg.models.MmsegLayout`,
``mmseg_layout``); this module holds only what every layout shares (ResNetV1c's stem, mmcv's
``ConvModule`` parts) and HRNet-OCR's backbone."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ...data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...models import MmsegLayout, Segmentor, create_model, get_model_class, list_models
from ..checkpoints.files import read_torch_file
from .reading import ConversionError, check_and_load, tensor_of

__all__ = ["from_mmseg", "mmseg_key", "read_mmseg_checkpoint", "MMSEG_MODELS", "MMSEG_DATASETS"]

#: contextseg options that rebuild each registered model's mmsegmentation 1.x layout (its
#: ``*_r50-d8`` / ``*_r101-d8`` configs: ResNetV1c at output stride 8 and the head widths mmseg
#: uses), from the models' own ``mmseg_layout``, as registered when this module was imported.
def _layouts() -> dict[str, MmsegLayout]:
    """Every registered model's mmseg layout, by name (models without one left out)."""
    return {name: get_model_class(name).mmseg_layout for name in list_models() if get_model_class(name).mmseg_layout}


MMSEG_MODELS: dict[str, dict] = {name: dict(layout.options) for name, layout in _layouts().items()}
#: mmsegmentation's dataset names -> (contextseg dataset, classes, palette)
MMSEG_DATASETS = ("ade20k", "cityscapes", "pascal_context", "pascal_context_59")

_STEM_RENAMES = (  # ResNetV1c's deep stem -> timm's resnet*c
    ("stem.0.", "body.conv1.0."), ("stem.1.", "body.conv1.1."), ("stem.3.", "body.conv1.3."), ("stem.4.", "body.conv1.4."),
    ("stem.6.", "body.conv1.6."), ("stem.7.", "body.bn1."),
)


def _layout(model: str) -> MmsegLayout:
    """The registered model's mmseg layout; ConversionError when it has none."""
    layouts = _layouts()
    if model not in layouts:
        raise ConversionError(f"model {model!r} has no mmsegmentation converter; choose one of {', '.join(layouts)}")
    return layouts[model]


_MMSEG_MODULE_PARTS = {"conv": "0", "bn": "1", "depthwise_conv": "0", "pointwise_conv": "1"}  # ConvModule / DepthwiseSeparableConvModule


def mmseg_key(key: str, model: str, hrnet: bool = False) -> str:
    """contextseg's name of the tensor an mmsegmentation 1.x checkpoint of ``model`` calls ``key``
    (``hrnet``: the backbone is an HRNet, whose names are timm's already, and OCRNet's region head
    is mmseg's 1x1 FCNHead on the concatenated branches)."""
    part, _, rest = key.partition(".")
    if part == "backbone":
        if hrnet or rest.startswith("layer"):
            return "backbone.body." + rest
        renames = _STEM_RENAMES
    elif hrnet and model == "ocrnet" and rest.startswith("0."):
        return "decode_head.region_head." + {"0.convs.0.conv.": "0.0.", "0.convs.0.bn.": "0.1.", "0.conv_seg.": "1."}.get(rest[: rest.rfind(".") + 1], "?.") + rest.rsplit(".", 1)[1]
    elif part in ("decode_head", "auxiliary_head"):
        renames = _layout(model).renames if part == "decode_head" else ()
        part = "aux_head" if part == "auxiliary_head" else part
    else:
        return key
    for old, new in renames:
        if rest.startswith(old):
            rest = new + rest[len(old):]
            break
    *path, leaf = rest.split(".")
    path = [_MMSEG_MODULE_PARTS.get(p, p) for p in path]
    return ".".join([part, *path, leaf])


def read_mmseg_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of an mmsegmentation checkpoint, read with ``weights_only=True``.

    mmengine checkpoints may pickle a few of mmengine's own objects in ``meta`` (a message hub's
    history buffers, config objects): they are read as inert stand-ins that hold their state and
    run no code; numpy arrays in ``meta`` are allowed as torch allows them."""
    path = Path(path)
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if path.is_file() and path.stat().st_size else []
    except Exception:  # not a zip torch file: the reader below says so
        unsafe = []
    safe = [_inert_class(name) for name in unsafe if name.startswith("mmengine.")] + _numpy_globals()
    raw = read_torch_file(path, "mmsegmentation checkpoint", safe_globals=safe, error=ConversionError)
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
    """An mmsegmentation 1.x checkpoint of a model that declares its mmseg layout (ResNetV1c
    backbones, the ``*_r50-d8`` / ``*_r101-d8`` zoo models; OCRNet also on HRNet-W18/W48, the
    ``ocrnet_hr18``/``ocrnet_hr48`` models, with mmseg's bilinear fuse upsampling) as a contextseg model.

    ResNetV1c is timm's ``resnet50c``/``resnet101c`` (depth read from the file); the head options
    are the model's ``mmseg_layout.options`` (overridable by ``options``); every tensor is
    mapped by name (`mmseg_key`) and any that is unmapped, missing or of another shape is
    refused by name. The v0.x zoo files (``download.openmmlab.com/mmsegmentation/v0.5/...``) use the
    same names. Classes and palette come from the checkpoint's ``meta.dataset_meta`` (1.x) or
    ``meta.CLASSES``/``PALETTE`` (0.x), else from ``dataset``, else from the class count (19:
    Cityscapes, 150: ADE20K, 60/59: Pascal Context); mean/std are mmseg's (ImageNet's).
    """
    from ...data.palettes import (ADE20K_CLASSES, ADE20K_PALETTE, PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE,
                                 PASCAL_CONTEXT_60_CLASSES, PASCAL_CONTEXT_60_PALETTE)

    layout = _layout(model)
    if dataset is not None and dataset not in MMSEG_DATASETS:
        raise ConversionError(f"dataset {dataset!r} is not one of {', '.join(MMSEG_DATASETS)}")
    if isinstance(source, dict):
        name, state, meta = "the state dict", dict(source.get("state_dict", source)), dict(source.get("meta") or {})
    else:
        name = str(source)
        state, meta = read_mmseg_checkpoint(source)
    layouts = _layouts()

    def has(kind: str) -> bool:
        return any(k.startswith(layouts[kind].signature) for k in state)

    def holds(kind: str) -> bool:  # its signature, and no model's that refines it
        return has(kind) and not any(other.refines == kind and has(other_name) for other_name, other in layouts.items())

    if not holds(model):
        looks = next((kind for kind in layouts if holds(kind)), None)
        reason = f"it has no {layout.signature}* tensors" if not has(model) else "its tensors are those of a model built on it"
        raise ConversionError(f"{name} is not an mmsegmentation {model} checkpoint: {reason}"
                              + (f"; it looks like a {looks} checkpoint (--model {looks})" if looks else ""))
    classifier = next((k for k in state if mmseg_key(k, model) == "decode_head.conv_seg.weight"), "decode_head.conv_seg.weight")
    num_classes = int(tensor_of(state, classifier, name, 4, "the classifier, (classes, channels, 1, 1)").shape[0])
    hrnet = "backbone.stage2.0.branches.0.0.conv1.weight" in state
    if hrnet and backbone is None:
        width = int(tensor_of(state, "backbone.stage2.0.branches.0.0.conv1.weight", name, 4, "HRNet's first branch conv").shape[0])
        backbone = f"hrnet_w{width}"
    if backbone is None:
        blocks = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
        depth = {6: 50, 23: 101}.get(blocks)
        if depth is None or "backbone.stem.0.weight" not in state:
            raise ConversionError(f"{name}: the backbone is not a ResNetV1c-50/101 (layer3 has {blocks} blocks, stem.0 {'present' if 'backbone.stem.0.weight' in state else 'absent'})")
        backbone = f"resnet{depth}c"
    kwargs = dict(layout.options, **options)
    if layout.auxiliary and not any(k.startswith("auxiliary_head.") for k in state):
        kwargs["aux_head"] = False
    if hrnet:  # the branches at strides 4-32, fused bilinearly as mmseg's HRNet does
        kwargs = {k: v for k, v in kwargs.items() if k != "region_channels"}
        kwargs.setdefault("hrnet_upsample", "bilinear")
    converted, origin = {}, {}
    for key, value in state.items():
        target = mmseg_key(key, model, hrnet)
        converted[target], origin[target] = value, key
    net = create_model(model, num_classes=num_classes, backbone=backbone, output_stride=32 if hrnet else 8, **kwargs)
    check_and_load(net, converted, name, origin)
    meta = meta if isinstance(meta, dict) else {}
    dataset_meta = meta.get("dataset_meta") or {"classes": meta.get("CLASSES"), "palette": meta.get("PALETTE")}  # 1.x, else 0.x zoo files
    dataset_meta = dataset_meta if isinstance(dataset_meta, dict) else {}
    known = {"ade20k": (ADE20K_CLASSES, ADE20K_PALETTE), "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
             "pascal_context": (PASCAL_CONTEXT_60_CLASSES, PASCAL_CONTEXT_60_PALETTE), "pascal_context_59": (PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE)}
    classes, palette = dataset_meta.get("classes"), dataset_meta.get("palette")
    if classes is None and dataset is not None:
        classes, palette = known[dataset]
    if classes is None:
        classes, palette = next(((c, p) for c, p in known.values() if len(c) == num_classes), (None, None))
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        classes = None  # a meta whose class list is not a list of names is no class list
    if not _palette_ok(palette, num_classes):
        palette = None
    if classes is not None and len(classes) == num_classes:
        net.meta.update(classes=list(classes), palette=[[int(v) for v in c] for c in palette][:num_classes] if palette is not None else None)
    net.meta.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), source=f"mmsegmentation: {name}")
    return net.eval()


def _palette_ok(palette, count: int) -> bool:
    """At least ``count`` colours of three integers in 0..255."""
    return (isinstance(palette, (list, tuple)) and len(palette) >= count
            and all(isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette))
