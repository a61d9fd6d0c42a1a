"""The subcommands behind ``contextseg``; each takes the parsed ``argparse.Namespace``."""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..engine.checkpoints.checkpoint import ensure_writable_folder
from ..data.io import check_output, png_mark, written_by_contextseg
from ..engine.checkpoints.files import atomic_write, output_lock, write_atomic
from ..engine.checkpoints.saved_model import load, load_checkpoint_model
from ..engine.checkpoints.saved_model import save_pretrained as save
from ..data.base import IMAGE_EXTENSIONS
from ..data.text import printable
from ..engine.config import ConfigError, load_config
from ..engine.log import get_logger
from ..engine.precision import inference_precision

log = get_logger("cli")


def _split_config_and_overrides(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """``contextseg train train.max_iters=5`` has no CONFIG: the first word is an override."""
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, list(overrides)


# -- train ------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from ..engine.training.trainer import train

    config, overrides = _split_config_and_overrides(args.config, args.overrides)
    cfg = load_config(config, overrides)
    if args.print_config:
        chosen = _resolved_precision(cfg.train.precision, cfg.train.channels_last, cfg.train.device)
        print(cfg.dump(), end="")
        print(f"# on this machine ({chosen[0]}): {chosen[1].describe()}")
        return 0
    source = config or "the embedded default (synthetic street scenes)"
    start = time.time()
    # the trainer announces the run once it has accepted every input (rank 0 only); progress bars on a terminal
    train(cfg, progress=sys.stderr.isatty(), overwrite=args.overwrite, source=source)
    log.info("done in %.0f s", time.time() - start)
    return 0


def _resolved_precision(precision: str, channels_last, device_name: str):
    """``(device, Precision)``: what ``auto`` (or an explicit value) means on this machine."""
    from ..engine.distributed import resolve_device
    from ..engine.precision import resolve_precision

    device = resolve_device(device_name)
    return device, resolve_precision(precision, channels_last, device)


# -- checkpoint-based commands -----------------------------------------------------------------
def _inference_overrides(args) -> list[str]:
    out = []
    if args.mode:
        out.append(f"evaluate.mode={args.mode}")
    if args.scales:
        out.append(f"evaluate.scales={args.scales}")
    if args.flip:
        out.append("evaluate.flip=true")
    return out


def cmd_eval(args) -> int:
    from ..engine.builders import build_eval_dataset
    from ..engine.distributed import resolve_device
    from ..engine.evaluate import evaluate, format_results

    config, overrides = _split_config_and_overrides(args.config, args.overrides)
    inputs = [args.checkpoint, *([config] if config else [])]
    if args.plots:  # every output checked before the evaluation, not after it
        for name in ("class_iou.png", "confusion.png"):
            check_output(Path(args.plots) / name, "--plots", args.overwrite, inputs)
        ensure_writable_folder(args.plots, "--plots")
    if args.json_path:
        json_path = Path(args.json_path)
        if json_path.is_dir():
            raise ConfigError(f"--json {args.json_path!r} is a folder; give a file path such as results.json")
        check_output(json_path, "--json", args.overwrite, inputs)
        ensure_writable_folder(json_path.parent, "--json")
    device = resolve_device(args.device)
    compat = ["evaluate.antialias=false"] if getattr(args, "mmseg_compat", False) else []
    model, cfg, ckpt = load_checkpoint_model(args.checkpoint, device, config, overrides + _inference_overrides(args) + compat)
    dataset = build_eval_dataset(cfg, args.split, with_positions=False)
    if list(dataset.classes) != list(ckpt["classes"]):
        ours, theirs = list(dataset.classes), list(ckpt["classes"])
        raise ConfigError(
            f"dataset {cfg.data.name!r} has {len(ours)} classes ({', '.join(ours[:4])}{', ...' if len(ours) > 4 else ''}) but checkpoint "
            f"{args.checkpoint!r} was trained on {len(theirs)} classes ({', '.join(theirs[:4])}{', ...' if len(theirs) > 4 else ''})"
        )
    ev = cfg.evaluate
    base = getattr(dataset.transforms, "base_size", None)
    size = f"test scale {base[0]}x{base[1]} (long x short side)" if base else "the images' own size"
    window = f" (windows {'x'.join(map(str, ev.crop_size or cfg.data.crop_size))})" if ev.mode == "slide" else ""
    chosen, autocast = inference_precision(model, device, args.precision)
    log.info("evaluating %s on %s/%s (%d images) at %s, mode %s%s, scales %s, flip %s, %s", args.checkpoint, cfg.data.name,
             args.split or cfg.data.val_split, len(dataset), size, ev.mode, window, ev.scales, ev.flip, chosen.precision)
    results = evaluate(model, dataset, ev, device, crop_size=cfg.data.crop_size, num_workers=min(cfg.data.num_workers, 2), autocast=autocast,
                       progress=sys.stderr.isatty())  # a progress bar on a terminal only, never into a log file
    print(format_results(results, dataset.classes))
    if args.plots:
        from ..engine.pictures.plots import plot_class_iou, plot_confusion

        title = f"{cfg.model['name']} on {cfg.data.name}/{args.split or cfg.data.val_split}"
        written = [plot_class_iou(results, dataset.classes, Path(args.plots) / "class_iou.png", title),
                   plot_confusion(results["confusion"], dataset.classes, Path(args.plots) / "confusion.png", title)]
        log.info("wrote %s", ", ".join(map(str, written)))
    if args.json_path:
        payload = {"written_by": "contextseg eval", "checkpoint": str(args.checkpoint), "classes": list(dataset.classes), **results}
        with output_lock(Path(args.json_path), "--json", "eval"):  # checked again: another run may have written it meanwhile
            check_output(args.json_path, "--json", args.overwrite, inputs)
            write_atomic(Path(args.json_path), json.dumps(payload, indent=2))
    return 0


def _collect_images(inputs: list[str]) -> list[tuple[Path, Path]]:
    """``(image, path relative to the inputs' common folder)`` for every image of ``inputs``
    (files, or folders searched recursively), so that outputs can mirror the input tree."""
    files: list[Path] = []
    roots: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            roots.append(path.resolve())
        elif path.is_file():
            files.append(path)
            roots.append(path.resolve().parent)
        elif path.exists():
            raise ValueError(f"input {item!r} is neither an image file nor a folder (a FIFO, socket or device)")
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {inputs}")
    base = Path(os.path.commonpath(roots))
    pairs, seen = [], set()
    for f in files:
        rel = f.resolve().relative_to(base)
        if rel not in seen:  # the same file named twice (a file and its folder) is predicted once
            seen.add(rel)
            pairs.append((f, rel))
    return pairs


def _prediction_targets(pairs: list[tuple[Path, Path]], out: Path, inputs: list[str], overwrite: bool, overlays: bool = True,
                        announce: bool = False) -> list[tuple[Path, Path, Path | None]]:
    """``(image, label PNG, overlay PNG or None)`` per image, refusing anything that could lose data:
    an output folder inside an input folder, an output that is an input, or existing files without
    ``overwrite`` (never a file contextseg did not write). Two images whose outputs would share a
    name are named apart (the extension, then a number), with a line when ``announce``."""
    out_resolved = out.resolve()
    for item in inputs:
        folder = Path(item).resolve()
        if Path(item).is_dir() and (out_resolved == folder or folder in out_resolved.parents):
            raise ConfigError(f"--out {str(out)!r} lies inside the input folder {item!r}: predictions would mix with (or overwrite) the inputs; choose a folder outside them")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    targets, written, renamed = [], {}, []
    stems = Counter((rel.parent, rel.stem) for _, rel in pairs)
    for image, rel in pairs:  # two outputs never share a name: frame.png and frame.jpg keep their extension, then a number
        base = rel.stem if stems[(rel.parent, rel.stem)] == 1 else f"{rel.stem}_{rel.suffix.lstrip('.').lower()}"
        stem, n = base, 2
        while True:
            label = out / rel.parent / f"{stem}.png"
            overlay = out / rel.parent / f"{stem}_overlay.png" if overlays else None
            if not any(t.resolve() in written for t in (label, overlay) if t is not None):
                break
            stem, n = f"{base}-{n}", n + 1
        for target in (label, overlay) if overlay is not None else (label,):
            written[target.resolve()] = image
        if stem != rel.stem:
            renamed.append(f"{image} as {label.name}")
        targets.append((image, label, overlay))
    if renamed and announce:
        log.info("%d input image(s) share their output name with another image, so their predictions are named apart: %s",
                 len(renamed), "; ".join(renamed[:5]) + ("; ..." if len(renamed) > 5 else ""))
    inputs_resolved = {image.resolve() for image, _ in pairs}
    clash = [t for t in written if t in inputs_resolved]
    if clash:
        raise ConfigError(f"predicting would overwrite the input {clash[0]}; choose another --out")
    existing = [t for t in written if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{len(existing)} output file(s) exist already, e.g. {existing[0]}; pass --overwrite to replace them or choose another --out")
    foreign = [t for t in existing if not written_by_contextseg(t)]
    if foreign:  # --overwrite replaces predict's own outputs only, never a photo that shares the name
        raise ConfigError(f"{foreign[0]} exists and was not written by contextseg predict ({len(foreign)} such file(s)); "
                          "--overwrite only replaces predictions: choose another --out")
    return targets


def _prediction_png_info():
    return png_mark("label map or overlay written by contextseg predict")


def _label_png(labels: np.ndarray, palette) -> "Image.Image":
    """The label map as a PNG image: paletted (mode ``P``) when the classes fit in 256 indices, so
    that a viewer shows the class colours while every pixel still stores its class index; 16-bit
    greyscale beyond (no viewer palette holds more than 256 colours)."""
    from PIL import Image

    if labels.dtype != np.uint8:
        return Image.fromarray(labels)
    image = Image.fromarray(labels)  # mode L; putpalette makes it P without touching the values
    colours = [int(v) for colour in list(palette)[:256] for v in colour]
    image.putpalette(colours + [0] * (768 - len(colours)))
    return image


def _save_png(image, path: Path) -> None:
    """A prediction PNG, marked as predict's own and written atomically (a full disk leaves no
    partial file: `WriteFailed` names it)."""
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=_prediction_png_info())


def cmd_predict(args) -> int:
    from ..engine.distributed import resolve_device

    out = Path(args.out)
    overlays = args.format == "png"
    if args.format == "cityscapes":  # first: the benchmark server matches predictions by the frames' names
        _require_cityscapes_frames(_collect_images(args.inputs))
    _prediction_targets(_collect_images(args.inputs), out, args.inputs, args.overwrite, overlays)
    device = resolve_device(args.device)
    model, cfg, _ = load_checkpoint_model(args.checkpoint, device, None, _inference_overrides(args))
    if args.format == "cityscapes":
        _require_cityscapes_classes(model, args.checkpoint)
    ensure_writable_folder(out, "--out")  # after every check: a refused model leaves no empty folder behind
    with output_lock(out, "--out", "predict"):  # one writer per folder; its targets checked again under the lock
        targets = _prediction_targets(_collect_images(args.inputs), out, args.inputs, args.overwrite, overlays, announce=True)
        return _predict_into(args, model, device, out, targets)


def _require_cityscapes_frames(pairs: list[tuple[Path, Path]]) -> None:
    """``--format cityscapes`` names each prediction after its input, and the benchmark server and
    ``cityscapesscripts`` find a frame's prediction by that name: any other file name is bad input
    (it would sit unmatched in the submission folder)."""
    from ..data.cityscapes import FRAME_NAME, is_cityscapes_frame

    bad = [image for image, _ in pairs if not is_cityscapes_frame(image.name)]
    if bad:
        raise ConfigError(f"--format cityscapes predicts Cityscapes frames, named {FRAME_NAME} as the benchmark server matches them; "
                          f"{len(bad)} of the {len(pairs)} input image(s) are not, the first: {bad[0]} (give the leftImg8bit images "
                          "of a split, or predict other images without --format cityscapes)")


def _require_cityscapes_classes(model, checkpoint) -> None:
    """``--format cityscapes`` writes label ids of the 19 Cityscapes classes: any other model is bad input."""
    from ..data.palettes import CITYSCAPES_CLASSES

    classes = list(model.meta.get("classes") or [])
    if classes != list(CITYSCAPES_CLASSES):
        shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "") if classes else "no class names"
        raise ConfigError(f"--format cityscapes needs a model trained on the 19 Cityscapes classes ({', '.join(CITYSCAPES_CLASSES[:3])}, ...); "
                          f"--checkpoint {checkpoint} has {model.num_classes} classes ({shown})")


def _predict_into(args, model, device, out: Path, targets: list[tuple[Path, Path, Path]]) -> int:
    from PIL import Image

    from ..data import colorize, to_cityscapes_label_ids
    from ..data.base import DatasetError, read_image
    from ..data.palettes import default_palette
    from ..engine.pictures.plots import add_legend

    palette = [tuple(c) for c in model.meta.get("palette") or default_palette(model.num_classes)]
    _, ctx = inference_precision(model, device, args.precision)
    done, failed = 0, []
    for path, label_path, overlay_path in targets:
        try:
            rgb = read_image(path, args.max_pixels)
        except DatasetError as exc:
            log.warning("skipped %s: %s", path, exc)
            failed.append(path)
            continue
        with ctx():
            labels = model.predict(rgb).cpu().numpy().astype(np.uint8 if model.num_classes <= 256 else np.uint16)
        if overlay_path is None:  # --format cityscapes: the label ids alone, as the benchmark server reads them
            _save_png(Image.fromarray(to_cityscapes_label_ids(labels)), label_path)  # 8-bit greyscale
            done += 1
            continue
        colour = colorize(labels, palette).astype(np.float32)
        overlay = ((1 - args.alpha) * rgb.astype(np.float32) + args.alpha * colour).round().clip(0, 255).astype(np.uint8)
        classes = model.meta.get("classes") or [str(k) for k in range(model.num_classes)]
        _save_png(_label_png(labels, palette), label_path)
        _save_png(Image.fromarray(add_legend(overlay, labels, classes, palette)), overlay_path)
        done += 1
    what = "Cityscapes label-id PNG(s), no overlays," if args.format == "cityscapes" else "label PNG(s) and overlays"
    log.info("wrote %d %s to %s%s", done, what, out, f"; {len(failed)} image(s) failed: {', '.join(map(str, failed))}" if failed else "")
    return 1 if failed else 0


def cmd_explain(args) -> int:
    from ..data.base import DatasetError, read_image
    from ..engine.distributed import resolve_device
    from ..engine.pictures.explain import NothingToExplain, explain, maps_by_group, render
    from ..models import get_model_class, list_models

    out = Path(args.out)
    model = load(args.checkpoint, resolve_device(args.device))
    if not type(model).has_context_maps():
        raise NothingToExplain(f"--checkpoint {args.checkpoint}: {type(model).__name__} is a baseline with no context module to explain; "
                               f"explain a context model ({', '.join(n for n in list_models() if get_model_class(n).has_context_maps())})")
    named = _picture_stems(_collect_images(args.inputs))
    images = [path for path, _ in named]
    for _, stem in named:  # every picture an earlier run left under these names, before any work
        for existing in sorted(out.glob(glob.escape(stem) + "_*.png")):
            check_output(existing, "--out", args.overwrite, images, read="an input image")
    ensure_writable_folder(out, "--out")
    written, failed = [], []
    for path, stem in named:
        try:
            rgb = read_image(path, args.max_pixels)
        except DatasetError as exc:
            log.warning("skipped %s: %s", path, exc)
            failed.append(path)
            continue
        explanation = explain(model, rgb, pixels=args.pixel)
        for group in maps_by_group(explanation):  # the names this image's pictures take, checked again before writing
            check_output(out / f"{stem}_{group}.png", "--out", args.overwrite, images, read="an input image")
        written += render(explanation, out, stem)
    log.info("wrote %d picture(s) to %s%s%s", len(written), out, ": " + ", ".join(p.name for p in written) if written else "", f"; {len(failed)} image(s) failed" if failed else "")
    return 1 if failed else 0


def _picture_stems(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, str]]:
    """``(image, stem)`` per image, the stems all different: an image's own stem, or, where two
    images share one (``a/frame.png`` and ``b/frame.png``, ``frame.png`` and ``frame.jpg``), its
    path relative to the inputs (pictures in subfolders of ``--out``), then its extension or a
    number; a line says which images were renamed so."""
    counts = Counter(rel.stem for _, rel in pairs)
    used: set[str] = set()
    named, renamed = [], []
    for image, rel in pairs:
        stem = rel.stem if counts[rel.stem] == 1 else rel.with_suffix("").as_posix()
        if stem in used:
            stem = f"{stem}_{rel.suffix.lstrip('.').lower()}"
        base, n = stem, 2
        while stem in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem)
        named.append((image, stem))
        if stem != rel.stem:
            renamed.append(f"{image} as {stem}_*.png")
    if renamed:
        log.info("%d input image(s) share a file name with another, so their pictures keep more of their path: %s",
                 len(renamed), "; ".join(renamed[:5]) + ("; ..." if len(renamed) > 5 else ""))
    return named


def cmd_convert(args) -> int:
    from ..engine.convert import from_encoding_resnet, from_hanet

    from ..engine.checkpoints.saved_model import check_saved_model_target

    out = Path(args.out)
    inputs = [args.checkpoint]
    if args.source in ("hanet", "mmseg"):
        check_saved_model_target(out, args.overwrite, "--out", inputs)  # before the conversion
    elif out.suffix == ".safetensors":
        check_output(out, "--out", args.overwrite, inputs)
    if args.source in ("hanet", "mmseg"):
        if args.source == "mmseg":
            from ..engine.convert import MMSEG_DATASETS, MMSEG_MODELS, from_mmseg

            if args.model not in MMSEG_MODELS:
                raise ConfigError(f"--model {args.model!r}: convert mmseg needs the model the checkpoint holds, one of {', '.join(MMSEG_MODELS)}")
            if args.dataset is not None and args.dataset not in MMSEG_DATASETS:
                raise ConfigError(f"--dataset {args.dataset!r}: expected one of {', '.join(MMSEG_DATASETS)}")
            model = from_mmseg(args.checkpoint, args.model, dataset=args.dataset)
        else:
            model = from_hanet(args.checkpoint)
        ensure_writable_folder(out, "--out")
        with output_lock(out, "--out", "convert"):
            check_saved_model_target(out, args.overwrite, "--out", inputs)
            save(model, out)
        log.info("wrote %s: a saved model for contextseg.load, and --checkpoint of predict, explain and eval (eval with a CONFIG of its dataset)", out)
        return 0
    from safetensors.torch import save_file

    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {args.out!r}: a converted backbone is written as a .safetensors file")
    name, state = from_encoding_resnet(args.checkpoint)
    ensure_writable_folder(out.parent, "--out")
    with output_lock(out, "--out", "convert"), atomic_write(out) as tmp:  # one writer; whole or not at all, never through a link
        check_output(out, "--out", args.overwrite, inputs)
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt", "library": "contextseg"})
    log.info("wrote %s: train with model.backbone=%s model.pretrained_backbone=%s", out, name, out)
    return 0


# -- models -----------------------------------------------------------------------------------
def cmd_models(args) -> int:
    from ..models import MODELS, list_models
    from ..engine.measure import build_for_input

    rows = []
    for name in list_models():
        model = build_for_input(name, args.backbone, args.num_classes, (512, 512))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append((name, f"{params:.1f}M", MODELS[name].description))
        del model
    width = max(len(r[0]) for r in rows)
    print(f"{'model':<{width}}  {'params':>7}  description   ({args.backbone}, {args.num_classes} classes)")
    for name, params, desc in rows:
        print(f"{name:<{width}}  {params:>7}  {desc}")
    return 0


# -- data ---------------------------------------------------------------------------------------
def cmd_data(args) -> int:
    from .. import data

    if args.data_command == "check":
        if args.max_pixels:
            from ..data.base import MAX_PIXELS_ENV

            os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)  # every image and mask the datasets read
        if args.name in data.DATASETS and args.name != "synthetic" and not Path(args.root).expanduser().is_dir():
            raise ValueError(f"root {args.root!r} is not a folder; {args.name} expects {data.DATASETS[args.name].layout}")  # bad input: exit 2
        problems = data.check_dataset(args.name, args.root, args.split)
        found, missing = data.dataset_splits(args.name, args.root)
        log.info("%s at %s: splits found: %s; missing: %s", args.name, args.root, ", ".join(found) or "none", ", ".join(missing) or "none")
        if problems:
            for line in problems:  # they quote file names and class names: control characters escaped
                print(f"- {printable(line)}")
            log.warning("%d problem(s) found in %s at %s", len(problems), args.name, args.root)
            return 1
        log.info("%s at %s: no problems found", args.name, args.root)
        return 0
    if args.data_command == "prepare":
        written = data.prepare_cityscapes(args.root)
        log.info("wrote %d *_labelTrainIds.png files under %s", written, args.root)
        return 0
    if args.data_command == "export-synthetic":
        splits = list(dict.fromkeys(s.strip() for s in args.splits.split(",") if s.strip()))  # each split once
        data.export_synthetic(args.out, splits=splits, size=tuple(args.size), length=args.length, seed=args.seed, overwrite=args.overwrite)
        log.info("wrote synthetic splits %s to %s (folder layout)", ", ".join(splits), args.out)
        return 0
    log.error("usage: contextseg data {check,prepare,export-synthetic} ...", extra={"as_is": True})
    return 2


# -- bench / export -----------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def cmd_export(args) -> int:
    from .export import run_export

    return run_export(args)


def cmd_demo(args) -> int:
    from .demo import cmd_demo as run_demo

    return run_demo(args)
