"""``contextseg export``: a checkpoint to ONNX (logits at the input size; dynamic batch and, where the
model allows, dynamic height and width; classes/palette/mean/std in its metadata) or to a
saved-model folder (``model.safetensors`` + ``config.json``, what ``cs.from_pretrained`` reads)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..engine.log import get_logger

log = get_logger("cli")


MIN_OPSET = 18  # torch.onnx.export(dynamo=True) writes opset 18 and newer; older ones come out as 18 after a failed conversion


def _check_opset(opset: int) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"--opset {opset}: the exporter writes opsets {MIN_OPSET} to {newest} (the installed onnx {onnx.__version__}'s newest); "
                         f"choose one of those (older runtimes: onnxruntime reads opset {MIN_OPSET} since 1.14)")


def run_export(args) -> int:
    from ..engine.checkpoints.checkpoint import ensure_writable_folder
    from ..engine.checkpoints.files import output_lock
    from ..data.io import check_output
    from ..engine.checkpoints.saved_model import check_saved_model_target, load_checkpoint_model, save_pretrained

    overwrite = getattr(args, "overwrite", False)
    out = Path(args.out)
    if args.format == "onnx":  # every option checked before the (slow) load and export
        _check_opset(args.opset)
    inputs = [args.checkpoint]
    if args.format == "safetensors":  # every check before the (slow) load and the first write
        check_saved_model_target(out, overwrite, "--out", inputs)
    elif out.is_dir():
        raise ValueError(f"--out {args.out!r} is a folder; give a file path such as model.onnx")
    else:
        check_output(out, "--out", overwrite, inputs)
    model, cfg, _ = load_checkpoint_model(args.checkpoint, torch.device("cpu"))
    if args.format == "safetensors":
        ensure_writable_folder(out, "--out")
        with output_lock(out, "--out", "export"):  # one writer; the target checked again under the lock
            check_saved_model_target(out, overwrite, "--out", inputs)
            save_pretrained(model, out)
        log.info("wrote %s and %s (load with contextseg.from_pretrained)", out / "model.safetensors", out / "config.json")
        return 0
    size = tuple(args.size) if args.size else tuple(cfg.data.crop_size)
    tied = model.tied_input_size()
    stride = model.backbone.output_stride
    if tied is not None and args.size and type(model).crop_options(size, stride) != type(model).crop_options(tied, stride):
        raise ValueError(
            f"--size {size[0]} {size[1]}: {type(model).__name__} is tied to its training crop {tied[0]}x{tied[1]} "
            f"({type(model).crop_options(tied, stride)}); export at --size {tied[0]} {tied[1]} and run larger images in windows of it"
        )
    ensure_writable_folder(out.parent, "--out")
    try:
        from ..engine.onnx_export import export_onnx
    except ImportError as exc:
        raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    with output_lock(out, "--out", "export"):
        check_output(out, "--out", overwrite, inputs)  # written by another run since the check above?
        try:
            metadata = export_onnx(model, out, size, args.opset)
        except ImportError as exc:
            raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    import json

    shape = "(N, 3, H, W): any batch and size" if json.loads(metadata["input"])["height"] is None else f"(N, 3, {size[0]}, {size[1]}): any batch, this size only"
    log.info("wrote %s: input images %s, normalised RGB; output logits; classes, palette, mean and std in its metadata", out, shape)
    return 0
