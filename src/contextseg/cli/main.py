"""``contextseg``: train, eval, predict, explain, convert, models, data, bench, export."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path
from typing import Sequence

# nothing of contextseg is imported here: `contextseg --help`, `--version` and a usage error answer
# without loading torch; a command imports what it runs once its arguments have parsed

__all__ = ["main", "build_parser"]


def _floats(text: str) -> list[float]:
    """Test-time scales: comma-separated numbers, checked by the one scale rule
    (`contextseg.models.inference.check_scales`)."""
    from ..models.inference import MAX_SCALE, check_scales

    try:
        return check_scales([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated scales in (0, {MAX_SCALE:g}] like 0.5,1.0,1.5, got {text!r}") from None


def _fraction(text: str) -> float:
    """An opacity: a finite number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected a number from 0 (photo only) to 1 (colours only), got {text!r}")
    return value


def _count(low: int = 1, high: int = 1 << 15):
    """An integer in [low, high] (a size in pixels, a count)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


SIZE = _count(1, 1 << 14)  # one side of an image: 1..16384 pixels


def _pixels_limit(text: str) -> int:
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a number of pixels such as 200000000, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return value


MAX_PIXELS_HELP = "skip images larger than this many pixels, read from the header before decoding (default: $CONTEXTSEG_MAX_IMAGE_PIXELS or 100000000)"


def _pixel(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel as x,y (two integers), got {text!r}") from None
    return x, y


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("whole", "slide"), help="whole image or sliding windows of the training crop")
    p.add_argument("--scales", type=_floats, help="test-time scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    p.add_argument("--flip", action="store_true", default=None, help="add horizontally flipped inputs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _add_precision_option(p)


def _add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast precision (auto: bf16 where the CPU or GPU computes it natively, fp16 on older tensor-core GPUs, fp32 elsewhere)")


def _installed_version() -> str:
    """The package metadata's version (the one place it is set: pyproject.toml)."""
    from importlib import metadata

    try:
        return metadata.version("contextseg")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contextseg", description="Semantic segmentation with context aggregation.")
    parser.add_argument("--version", action="version", version=f"contextseg {_installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (the embedded synthetic default without CONFIG)")
    p.add_argument("config", nargs="?", help="YAML config; omit to train the embedded default")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_iters=20")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--overwrite", action="store_true", help="with train.resume=false, replace the checkpoints of another run in the work dir")

    p = sub.add_parser("eval", help="evaluate a checkpoint: per-class IoU/Acc, mIoU/mAcc/aAcc")
    p.add_argument("config", nargs="?", help="optional YAML whose data/evaluate sections replace the checkpoint's")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.root=/data/ade")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by contextseg train, a run folder (its best.pt, else last.pt) or a saved-model folder")
    p.add_argument("--split", help="dataset split (default: the config's val_split)")
    p.add_argument("--json", dest="json_path", help="also write the results as JSON to this path")
    p.add_argument("--plots", help="also write class_iou.png and confusion.png to this folder (needs matplotlib)")
    p.add_argument("--overwrite", action="store_true", help="replace --json and --plots files an earlier contextseg run wrote (never a file of someone else)")
    p.add_argument("--mmseg-compat", action="store_true", help="resize test images as mmsegmentation's test pipeline does (cv2 bilinear, no antialiasing), to compare with its model zoo")
    _add_inference_options(p)

    what = "write a label PNG and a colour overlay per image (--format cityscapes: the benchmark's label-id PNGs, no overlays)"
    p = sub.add_parser("predict", help=what, description=what[0].upper() + what[1:] + ".")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--alpha", type=_fraction, default=0.5, help="overlay opacity of the colour mask (--format png; cityscapes writes no overlay)")
    p.add_argument("--format", choices=("png", "cityscapes"), default="png",
                   help="png: a paletted label PNG and a colour overlay per image; cityscapes: one 8-bit PNG of Cityscapes label ids "
                        "per frame and no overlay, named after the frame, for the benchmark server and cityscapesscripts (a Cityscapes "
                        "model only; the inputs must be frames named <city>_<6 digits>_<6 digits>_leftImg8bit.png)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist already")
    p.add_argument("--max-pixels", type=_pixels_limit, help=MAX_PIXELS_HELP)
    _add_inference_options(p)

    p = sub.add_parser("explain", help="pictures of what each context module looks at")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--checkpoint", required=True, help="a checkpoint, a run folder (its best.pt, else last.pt) or a saved-model folder of a context model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace pictures an earlier explain wrote (never a file of someone else)")
    p.add_argument("--pixel", type=_pixel, action="append", help="x,y in the image (repeat; default: one pixel on each of the largest predicted classes)")
    p.add_argument("--max-pixels", type=_pixels_limit, help=MAX_PIXELS_HELP)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")

    p = sub.add_parser("convert", help="official weights as contextseg models or backbones")
    p.add_argument("source", choices=("hanet", "encoding-resnet", "mmseg"), help="hanet: a released HANet Cityscapes model; encoding-resnet: PyTorch-Encoding's deep-stem ImageNet ResNet-50/101; mmseg: an mmsegmentation 1.x zoo checkpoint (--model)")
    p.add_argument("checkpoint", help="the official .pth file")
    p.add_argument("--out", required=True, help="hanet, mmseg: a saved-model folder; encoding-resnet: a .safetensors file")
    p.add_argument("--model", help="mmseg: which model the checkpoint holds (a contextseg model name that mmsegmentation also has, e.g. fcn, ocrnet)")
    p.add_argument("--dataset", help="mmseg: classes and palette when the checkpoint's meta has none (ade20k, cityscapes, pascal_context, pascal_context_59)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    p = sub.add_parser("models", help="list model names with parameter counts and descriptions")
    p.add_argument("--backbone", default="resnet50d")
    p.add_argument("--num-classes", type=_count(1, 1 << 16), default=150)

    p = sub.add_parser("data", help="dataset tools: check, prepare, export-synthetic")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    q = dsub.add_parser("check", help="validate a dataset on disk and report every problem")
    q.add_argument("name")
    q.add_argument("root")
    q.add_argument("--split", help="only this split (default: every split present)")
    q.add_argument("--max-pixels", type=_pixels_limit, help=MAX_PIXELS_HELP)
    q = dsub.add_parser("prepare", help="derive files a dataset needs (cityscapes: *_labelTrainIds.png)")
    q.add_argument("name", choices=("cityscapes",))
    q.add_argument("root")
    q = dsub.add_parser("export-synthetic", help="write the synthetic scenes in the folder layout")
    q.add_argument("out")
    q.add_argument("--splits", default="train,val")
    q.add_argument("--size", type=SIZE, nargs=2, metavar=("H", "W"), default=(128, 256))
    q.add_argument("--length", type=_count(1, 1 << 20), help="images per split (default: the split's default)")
    q.add_argument("--seed", type=_count(0, 2**32 - 1), default=0)
    q.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty (files of the same names are replaced)")

    p = sub.add_parser("bench", help="params, FLOPs, latency and peak memory per model")
    p.add_argument("--models", default="all", help="comma-separated names or 'all'")
    p.add_argument("--backbone", default="resnet50d")
    p.add_argument("--num-classes", type=_count(1, 1 << 16), default=150)
    p.add_argument("--size", type=SIZE, nargs=2, metavar=("H", "W"), default=(512, 512))
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=_count(1, 4096), default=1)
    p.add_argument("--repeats", type=_count(1, 10000), default=5)
    p.add_argument("--device", default="auto")
    _add_precision_option(p)
    p.add_argument("--train", action="store_true", help="time forward+backward of a training step instead")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compilation happens in the untimed warm-up)")
    p.add_argument("--channels-last", choices=("auto", "true", "false"), default="auto", help="NHWC memory format for the model and its input (auto: on for the CPU, and on CUDA with bf16/fp16)")
    p.add_argument("--json", dest="json_path", help="also write the rows as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace a --json file an earlier contextseg bench wrote (never a file of someone else)")

    p = sub.add_parser("demo", help="a page on this machine to try models on photos and see their context (pip install 'contextseg[demo]')")
    p.add_argument("--checkpoint", action="append", help="a checkpoint, a run folder (its best.pt, else last.pt) or a saved-model folder (repeat for a model picker; default: runs/default_synthetic)")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (default: this machine only)")
    p.add_argument("--port", type=_count(1, 65535), help="the port (default: 7860 or the next free one)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _add_precision_option(p)
    p.add_argument("--max-pixels", type=_pixels_limit, help=MAX_PIXELS_HELP)

    p = sub.add_parser("export", help="export a checkpoint for deployment")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "safetensors"), default="onnx", help="onnx: one .onnx file; safetensors: a saved-model folder")
    p.add_argument("--out", required=True, help="the .onnx file, or the saved-model folder")
    p.add_argument("--size", type=SIZE, nargs=2, metavar=("H", "W"), help="input size (default: the training crop)")
    p.add_argument("--opset", type=_count(1, 99), default=18, help="ONNX opset: 18 (default) up to what the installed onnx package knows; the exporter writes 18 and newer only")
    p.add_argument("--overwrite", action="store_true", help="replace an existing .onnx file, or the saved model (model.safetensors + config.json) in --out")
    return parser


def _join_negative_pixels(argv: list[str]) -> list[str]:
    """``--pixel -1,-1`` as ``--pixel=-1,-1``: argparse would read ``-1,-1`` as an option."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] == "--pixel" and re.fullmatch(r"-\d+,\s*-?\d+", token):
            out[-1] = f"--pixel={token}"
        else:
            out.append(token)
    return out


_FILE_SUFFIX = re.compile(r"\.(png|jpe?g|bmp|tiff?|webp|ya?ml|json|pt|pth|safetensors|onnx|txt)$", re.IGNORECASE)


def _file_names_read_as_options(argv: list[str]) -> list[str]:
    """Arguments before ``--`` that begin with one '-' but name a file (one on disk, or a name with a
    file extension, as ``-x.png``): argparse would report them as unknown options or as a missing input."""
    before = argv[: argv.index("--")] if "--" in argv else argv
    return [t for t in before if t.startswith("-") and not t.startswith("--") and len(t) > 2 and "=" not in t
            and (_FILE_SUFFIX.search(t) or os.path.lexists(t))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_negative_pixels(list(sys.argv[1:] if argv is None else argv))
    dashed = _file_names_read_as_options(argv)
    if dashed:
        parser.error(f"{dashed[0]!r} looks like a file name, but it begins with '-', so it is read as an option: put it after -- "
                     f"(contextseg COMMAND [OPTIONS] -- {dashed[0]}) or write it as ./{dashed[0]}")
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (contextseg eval CONFIG --checkpoint X data.root=...)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.parse_args(argv)  # argparse's own "unrecognized arguments" error (exit 2)
    if args.command is None:
        parser.print_help()
        return 0
    from ..engine.config import ConfigError
    from ..engine.log import get_logger, setup_logging
    from . import commands

    setup_logging()
    log = get_logger("cli")
    handler = getattr(commands, f"cmd_{args.command}")
    try:
        return int(handler(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError, FloatingPointError, OSError) as exc:
        if os.environ.get("CONTEXTSEG_DEBUG"):
            raise
        if not (isinstance(exc, OSError) or raised_by_contextseg(exc)):
            return _report_bug(args.command, exc)
        log.error("contextseg %s: error: %s", args.command, _one_line(exc), extra={"as_is": True})
        return 2
    except (MemoryError, RuntimeError) as exc:
        text = _one_line(exc)
        if os.environ.get("CONTEXTSEG_DEBUG"):
            raise
        if not isinstance(exc, MemoryError) and "allocate" not in text and "out of memory" not in text:
            return _report_bug(args.command, exc)
        log.error("contextseg %s: error: out of memory (%s); use smaller images, crops, batches or scales", args.command, text[:200], extra={"as_is": True})
        return 2
    except KeyboardInterrupt as exc:  # the trainer has already said where it stopped, when it did
        if not str(exc):
            log.error("interrupted", extra={"as_is": True})
        return 128 + (signal.SIGTERM if str(exc) == "SIGTERM" else signal.SIGINT)  # POSIX: 143 for SIGTERM, 130 for Ctrl-C


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def raised_by_contextseg(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by contextseg's own code (its innermost frame is in the package):
    the checks that refuse a user's input. An error raised inside torch, numpy, PIL or another
    library and not turned into one of ours is unexpected: a bug to report, not bad input."""
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return PACKAGE_DIR in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def _report_bug(command: str, exc: BaseException) -> int:
    """An unexpected exception: its traceback, and a line saying it is a bug (exit 1, not 2)."""
    import traceback

    from ..engine.log import get_logger

    from ..data.text import printable

    sys.stderr.write(printable("".join(traceback.format_exception(exc)), keep="\n"))  # a message may quote a file's text
    get_logger("cli").error("contextseg %s: internal error (%s); this is a bug in contextseg, not a problem with your input: please report it "
                            "with the traceback above (set CONTEXTSEG_DEBUG=1 to let Python raise it)", command, type(exc).__name__, extra={"as_is": True})
    return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an OSError names its file), safe for a terminal: the
    control and format characters of the file names and file contents it quotes are escaped."""
    from ..data.text import printable

    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, FileNotFoundError):
        text = f"{exc.strerror or exc}: {printable(exc.filename)}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(printable(text, keep=" \t\n\r").split())
