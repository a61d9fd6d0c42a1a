"""``contextseg export``: a checkpoint to ONNX (logits at the input size, fixed input shape) or to a
saved-model folder (``model.safetensors`` + ``config.json``, what ``cs.from_pretrained`` reads)."""

from __future__ import annotations

from pathlib import Path

import torch


def run_export(args) -> int:
    from ..engine.checkpoints.checkpoint import ensure_writable_folder
    from ..engine.checkpoints.saved_model import load_checkpoint_model, save_pretrained

    model, cfg, _ = load_checkpoint_model(args.checkpoint, torch.device("cpu"))
    if args.format == "safetensors":
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out!r} is a file; a saved model is a folder (model.safetensors + config.json)")
        ensure_writable_folder(out, "--out")
        save_pretrained(model, out)
        print(f"wrote {out / 'model.safetensors'} and {out / 'config.json'} (load with contextseg.from_pretrained)")
        return 0
    size = tuple(args.size) if args.size else tuple(cfg.data.crop_size)
    tied = model.tied_input_size()
    stride = model.backbone.output_stride
    if tied is not None and args.size and type(model).crop_options(size, stride) != type(model).crop_options(tied, stride):
        raise ValueError(
            f"--size {size[0]} {size[1]}: {type(model).__name__} is tied to its training crop {tied[0]}x{tied[1]} "
            f"({type(model).crop_options(tied, stride)}); export at --size {tied[0]} {tied[1]} and run larger images in windows of it"
        )
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {args.out!r} is a folder; give a file path such as model.onnx")
    ensure_writable_folder(out.parent, "--out")
    dummy = torch.randn(1, 3, *size)
    try:
        torch.onnx.export(model, (dummy,), str(out), input_names=["images"], output_names=["logits"], opset_version=args.opset, dynamo=True, external_data=False)
    except ImportError as exc:
        raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    print(f"wrote {out} (input images (1, 3, {size[0]}, {size[1]}) normalised, output logits)")
    return 0
