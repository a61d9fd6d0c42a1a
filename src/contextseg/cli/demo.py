"""``contextseg demo``: a page on this machine to try trained models on a photo and see their context.

Built with Gradio (``pip install "contextseg[demo]"``). Pick or drop an image (example scenes are
rendered by the package itself), see the colour overlay with its legend, the label map, each class's
share of the pixels and the inference time; flip and scales default to the model's own settings. For
a context model, click a pixel of the label map to see what that pixel listens to: the pictures of
``contextseg explain`` (the same code, `contextseg.engine.pictures.explain.explain`) for that
pixel: CPNet's prior row and 1 - P, OCRNet's weights over the object regions, HANet's attention of
the image row, EncNet's class-presence bars, SPNet's strip-pooling gates.

Safe by default: it binds 127.0.0.1; analytics are off and the page uses the system's fonts, so
nothing at page load leaves the machine; uploads land in a temporary folder of the demo's own and
are never written into the user's folders; a file that is not an image, an image over the pixel
limit (the header is read before decoding) or a damaged one gets a message on the page.
"""


import os
import signal
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data.text import printable
from ..engine.log import get_logger

DEFAULT_RUN = Path("runs") / "default_synthetic"  # the default training's work dir: its best.pt, else its last.pt
NO_MODEL = (f"no --checkpoint given and {DEFAULT_RUN} holds no checkpoint: train the default first (`contextseg train`, "
            "a few minutes on a CPU) or pass --checkpoint (a checkpoint, a run folder or a saved-model folder)")


def _labels_for(paths: list[Path]) -> list[str]:
    """Short unique names of the checkpoints: the run folder and file (``default_synthetic/best.pt``),
    control characters escaped (the page and the log show them)."""
    names = []
    for path in paths:
        name = printable(f"{path.parent.name}/{path.name}" if path.is_file() else path.name)
        while name in names:
            name += "'"
        names.append(name)
    return names


class Demo:
    """The page's logic, without Gradio: loaded models, segmentation and the context view (the
    browser test drives the page; these methods are what its callbacks call)."""

    def __init__(self, checkpoints: list[Path], device: str = "cpu", max_pixels: int | None = None, precision: str = "auto") -> None:
        from ..engine.checkpoints.saved_model import load
        from ..engine.precision import inference_precision

        self.models = {name: load(path, device) for name, path in zip(_labels_for(checkpoints), checkpoints)}
        self.autocast = {name: inference_precision(model, device, precision)[1] for name, model in self.models.items()}
        self.max_pixels = max_pixels
        self.workdir = Path(tempfile.mkdtemp(prefix="contextseg-demo-"))  # uploads, examples, pictures: ours only

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- inputs --------------------------------------------------------------------------------
    def examples(self, count: int = 3) -> list[str]:
        """A few synthetic street scenes as PNGs in the demo's own folder (nothing downloaded)."""
        from PIL import Image

        from ..data.synthetic import SyntheticStreetScenes

        folder = self.workdir / "examples"
        folder.mkdir(exist_ok=True)
        model = next(iter(self.models.values()))
        base = model.meta.get("base_size") or [192, 96]
        scenes = SyntheticStreetScenes(split="test", size=(int(min(base)), int(max(base))), length=count)
        paths = []
        for k in range(count):
            image, _ = scenes[k]
            path = folder / f"scene_{k}.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
            paths.append(str(path))
        return paths

    def read(self, path: str | None) -> np.ndarray:
        """The uploaded file as RGB; ValueError with the page's message otherwise."""
        from ..data.base import DatasetError, read_image

        if not path:
            raise ValueError("drop an image or pick an example")
        try:
            return read_image(Path(path), self.max_pixels)
        except DatasetError as exc:
            raise ValueError(printable(str(exc).replace(str(Path(path).parent) + os.sep, ""))) from None

    # -- what the page shows ---------------------------------------------------------------------
    def settings(self, name: str) -> tuple[bool, str]:
        """The model's own flip and scales (what its training config evaluated with)."""
        inference = self.models[name].default_inference()
        return bool(inference["flip"]), ", ".join(f"{s:g}" for s in inference["scales"])

    def segment(self, name: str, rgb: np.ndarray, flip: bool, scales: str) -> dict[str, Any]:
        """Overlay with legend, colour label map, class shares and seconds of ``model.predict``."""
        import torch

        from ..data import colorize
        from ..data.palettes import default_palette
        from ..engine.pictures.plots import add_legend

        model = self.models[name]
        try:
            values = [float(s) for s in scales.replace(" ", "").split(",") if s]
        except ValueError:
            raise ValueError(f"scales {scales!r}: give numbers like 0.75, 1.0, 1.25") from None
        start = time.perf_counter()
        with torch.inference_mode(), self.autocast[name]():
            labels = model.predict(rgb, flip=bool(flip), scales=values or [1.0]).cpu().numpy()
        seconds = time.perf_counter() - start
        classes = [printable(c) for c in model.meta.get("classes") or [str(k) for k in range(model.num_classes)]]
        palette = [tuple(c) for c in model.meta.get("palette") or default_palette(model.num_classes)]
        colour = colorize(labels, palette)
        overlay = (0.5 * rgb.astype(np.float32) + 0.5 * colour).round().clip(0, 255).astype(np.uint8)
        present, counts = np.unique(labels, return_counts=True)
        shares = {classes[k]: float(c) / labels.size for k, c in zip(present, counts) if k < len(classes)}
        return {"labels": labels, "overlay": add_legend(overlay, labels, classes, palette), "label_map": colour, "shares": shares, "seconds": seconds}

    def context(self, name: str, rgb: np.ndarray, pixel: tuple[int, int]) -> list[tuple[str, str]]:
        """What ``pixel`` (x, y) of the photo listens to: the explain pictures, as (file, caption)."""
        from ..engine.pictures.explain import explain

        model = self.models[name]
        if not type(model).has_context_maps():
            raise ValueError(f"{type(model).__name__} is a baseline: it has no context module to show; pick a context model")
        folder = Path(tempfile.mkdtemp(dir=self.workdir, prefix="context-"))
        result = explain(model, rgb, pixels=[pixel], out_dir=folder, stem="context")
        return [(str(p), p.stem.removeprefix("context_").replace("_", " ")) for p in result["files"]]


def stack_pictures(paths: list[str]) -> np.ndarray:
    """The explain pictures one below the other on white, as one RGB image."""
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    width = max(i.shape[1] for i in images)
    padded = [np.pad(i, ((0, 8), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images]
    return np.concatenate(padded, 0)


MIN_DISPLAY_HEIGHT = 320  # a 96 x 192 synthetic scene shown as it is is too small to click a chosen pixel


def display_factor(height: int) -> int:
    """The whole-number factor that shows a photo of ``height`` rows at least ``MIN_DISPLAY_HEIGHT`` high."""
    return max(1, -(-MIN_DISPLAY_HEIGHT // max(height, 1)))


def enlarge(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` with every pixel repeated ``factor`` x ``factor`` times (nearest neighbour: the
    label map keeps its exact class colours, and a click maps back by integer division)."""
    return picture if factor == 1 else np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def build_page(demo: Demo):
    """The Gradio page over ``demo``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    names = list(demo.models)
    first_flip, first_scales = demo.settings(names[0])

    def run(name, path, flip, scales):
        try:
            rgb = demo.read(path)
            out = demo.segment(name, rgb, flip, scales)
        except ValueError as exc:  # the page says why; nothing of the previous photo stays on it
            return None, None, None, None, f"**{exc}**", None, None, ""
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        timing = f"{1000 * out['seconds']:.0f} ms for a {size} photo on {next(demo.models[name].parameters()).device}"
        hint = "Click a pixel of the label map to see what it listens to." if type(demo.models[name]).has_context_maps() else \
            f"{type(demo.models[name]).__name__} is a baseline: no context view."
        factor = display_factor(rgb.shape[0])
        return enlarge(out["overlay"], factor), enlarge(out["label_map"], factor), out["shares"], timing, hint, rgb, None, ""

    def click(name, rgb, event: gr.SelectData):
        if rgb is None:
            return None, "**drop an image first**"
        factor = display_factor(rgb.shape[0])
        x, y = (int(v) // factor for v in event.index)  # the click on the enlarged picture, in the photo's pixels
        try:
            pictures = demo.context(name, rgb, (x, y))
        except ValueError as exc:
            return None, f"**{exc}**"
        return stack_pictures([path for path, _ in pictures]), f"What pixel ({x}, {y}) listens to: {', '.join(c for _, c in pictures)}"

    with gr.Blocks(title="contextseg demo", analytics_enabled=False) as page:
        gr.Markdown("# contextseg\nSegment a photo and see which pixels each pixel listens to.")
        photo_rgb = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(names, value=names[0], label="model", interactive=len(names) > 1, elem_id="model")
                upload = gr.File(label="photo (drop or pick an image)", type="filepath", elem_id="photo")
                gr.Examples(demo.examples(), inputs=[upload], label="examples (synthetic scenes)")
                flip = gr.Checkbox(first_flip, label="flip (test-time augmentation)", elem_id="flip")
                scales = gr.Textbox(first_scales, label="scales", elem_id="scales")
                status = gr.Markdown("", elem_id="status")
                timing = gr.Markdown("", elem_id="timing")
            with gr.Column(scale=2):
                overlay = gr.Image(label="overlay", interactive=False, elem_id="overlay", format="png")
                label_map = gr.Image(label="label map (click a pixel)", interactive=False, elem_id="label_map", format="png")
                shares = gr.Label(label="share of the pixels", elem_id="shares")
        context_note = gr.Markdown("", elem_id="context_note")
        context = gr.Image(label="context of the clicked pixel", interactive=False, elem_id="context", format="png")

        outputs = [overlay, label_map, shares, timing, status, photo_rgb, context, context_note]
        inputs = [model, upload, flip, scales]
        upload.change(run, inputs, outputs)
        for control in (flip, scales):
            control.change(run, inputs, outputs)

        def pick_model(name, path, _flip, _scales):
            f, s = demo.settings(name)
            return (f, s, *run(name, path, f, s))

        model.change(pick_model, inputs, [flip, scales, *outputs])
        label_map.select(click, [model, photo_rgb], [context, context_note])
    return page


def local_theme():
    """Gradio's default look with the system's fonts, so that no theme font is ever fetched (Gradio 6.31's
    default theme serves its fonts itself; a theme with ``GoogleFont`` would load them from Google)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def cmd_demo(args) -> int:
    checkpoints = [Path(p) for p in args.checkpoint] if args.checkpoint else []
    if not checkpoints:
        if not any((DEFAULT_RUN / name).is_file() for name in ("best.pt", "last.pt")):
            raise FileNotFoundError(NO_MODEL)
        checkpoints = [DEFAULT_RUN]
    for path in checkpoints:
        if not path.exists():
            raise FileNotFoundError(f"--checkpoint {str(path)!r} does not exist")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the demo needs Gradio: pip install 'contextseg[demo]'") from None
    from ..engine.distributed import resolve_device

    demo = Demo(checkpoints, str(resolve_device(args.device)), args.max_pixels, args.precision)
    # uploads land in the demo's own folder, removed on every exit: Ctrl-C, SIGTERM, an error
    uploads = demo.workdir / "uploads"
    previous_dir = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)  # read by Gradio when the page and its server are built
    previous_term = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        page = build_page(demo)
        # quiet: Gradio's own lines end with a share=True hint that a CLI user cannot act on; the address is ours to say
        page.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True, theme=local_theme(),
                    max_file_size="200mb", allowed_paths=[str(demo.workdir)], prevent_thread_lock=True)
        get_logger("cli").info("contextseg demo: %s on %s (Ctrl-C stops it)", ", ".join(demo.models), page.local_url)
        page.block_thread()
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_dir is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_dir
        demo.close()
    return 0


def _exit_on_sigterm(signum, frame):
    """SIGTERM ends the demo like Ctrl-C: through the ``finally`` that removes its folder."""
    raise SystemExit(128 + signum)
