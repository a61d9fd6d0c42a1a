"""A model as an ONNX file a user can run without contextseg: ``images (N, 3, H, W)`` float32 (RGB
/ 255, normalised with the stored mean and std) -> ``logits (N, K, H, W)``.

The batch axis is always dynamic; height and width are too unless the model says otherwise
(`onnx_any_size`: adaptive pooling grids and CPNet's prior are
frozen at the exported size). The file's metadata (``InferenceSession(path).get_modelmeta().custom_metadata_map``
in onnxruntime) holds what is needed to use it: the classes, palette, mean and std, the test scale,
the input size when it is fixed, and the model's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .checkpoints.files import atomic_write

__all__ = ["export_onnx", "onnx_metadata"]


def onnx_metadata(model, size: Sequence[int], any_size: bool) -> dict[str, str]:
    """The metadata strings stored in the file (JSON values)."""
    meta = model.meta
    classes = meta.get("classes") or [str(k) for k in range(model.num_classes)]
    return {
        "contextseg_model": json.dumps(meta.get("model", {}).get("name", type(model).__name__.lower())),
        "classes": json.dumps(list(classes)),
        "palette": json.dumps([list(map(int, c)) for c in meta.get("palette") or []]),
        "mean": json.dumps(list(meta.get("mean") or IMAGENET_MEAN)),
        "std": json.dumps(list(meta.get("std") or IMAGENET_STD)),
        "base_size": json.dumps(meta.get("base_size")),
        "input": json.dumps({"name": "images", "layout": "NCHW", "dtype": "float32", "values": "RGB / 255, then (x - mean) / std",
                             "height": None if any_size else int(size[0]), "width": None if any_size else int(size[1])}),
        "output": json.dumps({"name": "logits", "layout": "NKHW", "labels": "argmax over K"}),
    }


def export_onnx(model, path: str | Path, size: Sequence[int], opset: int = 18) -> dict[str, str]:
    """Export ``model`` (eval mode, on the CPU) to ``path`` (written atomically) by tracing a
    ``(1, 3, *size)`` input with ``torch.onnx.export(dynamo=True)``; returns the stored metadata."""
    import onnx
    from torch.export import Dim

    any_size = bool(type(model).onnx_any_size) and model.tied_input_size() is None
    axes = {0: Dim.AUTO, **({2: Dim.AUTO, 3: Dim.AUTO} if any_size else {})}
    dummy = torch.randn(1, 3, *size)
    metadata = onnx_metadata(model, size, any_size)
    with atomic_write(path) as tmp:
        torch.onnx.export(model.eval(), (dummy,), str(tmp), input_names=["images"], output_names=["logits"], opset_version=opset,
                          dynamo=True, external_data=False, dynamic_shapes=(axes,), verbose=False)
        proto = onnx.load(str(tmp))
        written = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)
        if written != opset:  # the exporter fell back to another opset: never hand over a file of another opset
            raise ValueError(f"opset {opset} was asked for but the exporter wrote opset {written}; nothing was written to {path}")
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return metadata
