"""``contextseg export``: a checkpoint to ONNX (logits at the input size; dynamic batch and, where the
model allows, dynamic height and width; classes/palette/mean/std in its metadata) or to a
saved-model folder (``model.safetensors`` + ``config.json``, what ``cs.from_pretrained`` reads)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..engine.log import get_logger

log = get_logger("cli")


def _check_saved_model_target(out: Path, overwrite: bool) -> None:
    """A saved model goes into a new or empty folder; ``--overwrite`` replaces a saved model's two
    files and nothing else: a folder holding anything more (a run folder, a dataset) is refused."""
    from ..engine.checkpoints.saved_model import CONFIG_NAME, WEIGHTS_NAME

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; a saved model is a folder (model.safetensors + config.json)")
    present = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    foreign = [name for name in present if name not in (WEIGHTS_NAME, CONFIG_NAME)]
    if foreign:
        raise ValueError(f"--out {str(out)!r} holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                         "export a saved model into a new or empty folder")
    if present and not overwrite:
        raise ValueError(f"--out {str(out)!r} holds a saved model already; add --overwrite to replace it")


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
    from ..engine.checkpoints.saved_model import load_checkpoint_model, save_pretrained

    overwrite = getattr(args, "overwrite", False)
    out = Path(args.out)
    if args.format == "onnx":  # every option checked before the (slow) load and export
        _check_opset(args.opset)
    if args.format == "safetensors":  # every check before the (slow) load and the first write
        _check_saved_model_target(out, overwrite)
    elif out.is_dir():
        raise ValueError(f"--out {args.out!r} is a folder; give a file path such as model.onnx")
    elif out.exists() and not overwrite:
        raise ValueError(f"--out {args.out!r} exists; add --overwrite to replace it")
    model, cfg, _ = load_checkpoint_model(args.checkpoint, torch.device("cpu"))
    if args.format == "safetensors":
        ensure_writable_folder(out, "--out")
        with output_lock(out, "--out", "export"):  # one writer; the target checked again under the lock
            _check_saved_model_target(out, overwrite)
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
        if out.exists() and not overwrite:  # written by another run since the check above
            raise ValueError(f"--out {args.out!r} exists; add --overwrite to replace it")
        try:
            metadata = export_onnx(model, out, size, args.opset)
        except ImportError as exc:
            raise ValueError(f"ONNX export needs the onnx extra: pip install 'contextseg[onnx]' ({exc})") from None
    import json

    shape = "(N, 3, H, W): any batch and size" if json.loads(metadata["input"])["height"] is None else f"(N, 3, {size[0]}, {size[1]}): any batch, this size only"
    log.info("wrote %s: input images %s, normalised RGB; output logits; classes, palette, mean and std in its metadata", out, shape)
    return 0
