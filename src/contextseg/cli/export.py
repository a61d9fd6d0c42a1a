"""``contextseg export``: a checkpoint to ONNX (logits at the input size, fixed input shape)."""

from __future__ import annotations

from pathlib import Path

import torch


def run_export(args) -> int:
    from .commands import load_trained_model

    model, cfg, _ = load_trained_model(args.checkpoint, torch.device("cpu"))
    size = tuple(args.size) if args.size else tuple(cfg.data.crop_size)
    dummy = torch.randn(1, 3, *size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(model, (dummy,), str(out), input_names=["images"], output_names=["logits"], opset_version=args.opset, dynamo=True, external_data=False)
    except ImportError as exc:
        raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    print(f"wrote {out} (input images (1, 3, {size[0]}, {size[1]}) normalised, output logits)")
    return 0
