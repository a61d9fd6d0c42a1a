"""Inference: whole image or sliding window, with multi-scale + flip test-time augmentation.

All functions take normalised images ``(B, 3, H, W)`` and a model in eval mode that maps them to
logits at the input size. Sliding windows always have exactly the window size (smaller images and
border windows are zero-padded and the padding cropped off the logits), which CPNet's fixed prior
size requires. For height-aware models (HANet) each window gets the absolute row positions of the
rows it covers.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.transforms import row_tops
from ..modules.common import resize

# ``inference`` is imported from this module or as ``contextseg.engine.inference``: exported by the
# package it would hide this module (contextseg.exports)
__all__ = ["INFERENCE_SETTINGS", "predict_labels", "slide_inference", "whole_inference", "row_positions", "slide_windows", "check_scales", "check_window", "MAX_SCALE"]

#: the inference settings a model carries (``model.meta["inference"]``, a saved model's config, the
#: ``evaluate`` section of a training config) and ``Segmentor.predict`` takes, with their defaults
INFERENCE_SETTINGS: dict[str, object] = {"mode": "whole", "crop_size": None, "stride": None, "scales": [1.0], "flip": False}

MAX_SCALE = 8.0  # the largest test-time resize factor anywhere (a 1e9 scale is a typo, not a request)


def check_scales(scales: Sequence[float]) -> list[float]:
    """The test-time scale rule, the one every entry point applies (``predict``, ``inference``, the
    config's ``evaluate.scales``, the CLI's ``--scales``): a non-empty sequence of finite numbers
    (not booleans, not strings) in (0, MAX_SCALE]; ValueError otherwise."""
    message = f"scales must be a non-empty list of numbers in (0, {MAX_SCALE:g}], got {scales!r}"
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
        raise ValueError(message)
    values = list(scales)
    if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise ValueError(message)
    values = [float(v) for v in values]
    if not all(math.isfinite(v) and 0 < v <= MAX_SCALE for v in values):
        raise ValueError(message)
    return values


MAX_SIDE = 16384  # the longest window side (= contextseg.engine.config.MAX_SIDE, which the CLI checks)


def check_window(value: Sequence[int], what: str) -> None:
    """A sliding window's ``crop_size`` or ``stride``: two integers in [1, MAX_SIDE]; ValueError
    naming ``what`` otherwise (the checks a config's evaluate section gets)."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in value)):
        raise ValueError(f"{what} must be two positive integers (h, w), at most {MAX_SIDE}, got {value!r}")


def row_positions(batch: int, height: int, device=None) -> torch.Tensor:
    """Row positions of a full image as fractions of its height: ``(B, H)`` = ``r / H``."""
    return row_tops(height, device).expand(batch, height)


def _uses_positions(model) -> bool:
    return bool(getattr(getattr(model, "module", model), "uses_positions", False))


def _call(model, images: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    run = (lambda: model(images, positions=positions)) if positions is not None and _uses_positions(model) else (lambda: model(images))
    logits = run()
    device = images.device.type
    if torch.is_autocast_enabled(device) and not bool(torch.isfinite(logits).all()):
        # torch 2.14.1's CPU bf16 kernel of a strided 3x3 convolution with a one-pixel-wide output
        # (a ResNet stage-4 stride on an image under ~64 px wide at output stride 32) returns
        # non-finite values on some calls; the same forward in fp32 is exact, so it is used instead
        with torch.autocast(device, enabled=False):
            logits = run()
    return logits


def whole_inference(model, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` of the whole image in one forward pass."""
    return _call(model, images, positions)


def slide_windows(height: int, width: int, crop: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Window boxes ``(y1, y2, x1, x2)`` covering the image, mmsegmentation's grid rule."""
    ch, cw = crop
    sh, sw = stride
    h_grids = max(height - ch + sh - 1, 0) // sh + 1
    w_grids = max(width - cw + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2 = min(i * sh + ch, height)
            x2 = min(j * sw + cw, width)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


def slide_inference(
    model,
    images: torch.Tensor,
    crop_size: Sequence[int],
    stride: Sequence[int] | None = None,
    positions: torch.Tensor | None = None,
    window_batch: int = 4,
) -> torch.Tensor:
    """Average the logits of overlapping ``crop_size`` windows: ``(B, 3, H, W) -> (B, K, H, W)``.

    ``stride`` defaults to 2/3 of the window. ``positions (B, H)`` are the rows' absolute heights
    (default: the image spans the whole original frame); each window receives its rows' slice.
    """
    b, _, h, w = images.shape
    ch, cw = (int(crop_size[0]), int(crop_size[1]))
    sh, sw = stride if stride is not None else (max(1, 2 * ch // 3), max(1, 2 * cw // 3))
    wants_pos = _uses_positions(model)
    if wants_pos and positions is None:
        positions = row_positions(b, h, images.device)
    boxes = slide_windows(h, w, (ch, cw), (sh, sw))
    out = None
    count = images.new_zeros(1, 1, h, w)
    for start in range(0, len(boxes), window_batch):
        chunk = boxes[start : start + window_batch]
        crops = [F.pad(images[..., y1:y2, x1:x2], (0, cw - (x2 - x1), 0, ch - (y2 - y1))) for y1, y2, x1, x2 in chunk]
        pos = None
        if wants_pos:
            pos = torch.cat([F.pad(positions[:, y1:y2], (0, ch - (y2 - y1)), value=1.0) for y1, y2, _, _ in chunk])
        logits = _call(model, torch.cat(crops), pos).float()
        if out is None:
            out = images.new_zeros(b, logits.shape[1], h, w, dtype=torch.float32)
        for k, (y1, y2, x1, x2) in enumerate(chunk):
            out[..., y1:y2, x1:x2] += logits[k * b : (k + 1) * b, :, : y2 - y1, : x2 - x1]
            count[..., y1:y2, x1:x2] += 1
    return out / count


@torch.no_grad()
def inference(
    model,
    images: torch.Tensor,
    mode: str = "whole",
    crop_size: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_size: Sequence[int] | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities ``(B, K, *out_size)`` averaged over scales and flips.

    Args:
        model: eval-mode segmentor (logits at input size).
        images: ``(B, 3, H, W)`` normalised.
        mode: ``"whole"`` or ``"slide"`` (needs ``crop_size``).
        scales: resize factors applied to ``images`` (test-time augmentation).
        flip: also run the horizontally flipped image and flip its logits back.
        out_size: size of the returned probabilities (the label's size); default ``(H, W)``.
        positions: ``(B, H)`` absolute row heights (HANet); default: the image is the whole frame.
    """
    out_size = tuple(out_size) if out_size is not None else tuple(images.shape[-2:])
    probs = None
    count = 0
    for logits in _augmented_logits(model, images, mode, crop_size, stride, scales, flip, positions):
        with torch.autocast(images.device.type, enabled=False):  # the resize and softmax of fp32 logits stay fp32
            p = resize(logits, out_size).softmax(1)
        probs = p if probs is None else probs + p
        count += 1
    return probs / count


def _augmented_logits(model, images, mode, crop_size, stride, scales, flip, positions):
    """Float logits ``(B, K, h_s, w_s)`` of each scale and flip, at the size the model ran at (a
    flipped run flipped back)."""
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide" and crop_size is None:
        raise ValueError("slide inference needs crop_size (the training crop, (h, w))")
    if mode == "slide":
        check_window(crop_size, "crop_size")
        if stride is not None:
            check_window(stride, "stride")
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    scales = check_scales(scales)
    h, w = images.shape[-2:]
    wants_pos = _uses_positions(model)
    if wants_pos and positions is None:
        positions = row_positions(images.shape[0], h, images.device)
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        img = resize(images, size)
        pos = None
        if wants_pos:
            # resized like the release's row map: nearest neighbour
            pos = positions if size[0] == h else F.interpolate(positions[:, None], size=size[0], mode="nearest")[:, 0]
        for flipped in (False, True) if flip else (False,):
            x = img.flip(-1) if flipped else img
            if mode == "slide":
                logits = slide_inference(model, x, crop_size, stride, pos)
            else:
                logits = whole_inference(model, x, pos)
            if flipped:
                logits = logits.flip(-1)
            yield logits.float()


def _bilinear_taps(size_in: int, size_out: int, start: int, stop: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``i0, i1`` and weight ``t`` of output positions ``start..stop-1`` of a bilinear
    resize ``size_in -> size_out`` with ``align_corners=False`` (``F.interpolate``'s rule:
    ``src = (i + 0.5) * size_in / size_out - 0.5``, clamped at 0)."""
    scale = size_in / size_out
    src = ((torch.arange(start, stop, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=size_in - 1)
    i1 = (i0 + 1).clamp(max=size_in - 1)
    return i0, i1, src - i0


def _resize_rows(logits: torch.Tensor, out_size: Sequence[int], start: int, stop: int) -> torch.Tensor:
    """Rows ``start..stop-1`` of ``resize(logits, out_size)`` (bilinear, corners not aligned),
    computed from the source rows they need only: ``(B, K, stop - start, W)``."""
    (b, k, h, w), (big_h, big_w) = logits.shape, out_size
    y0, y1, ty = _bilinear_taps(h, big_h, start, stop, logits.device)
    rows, inverse = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    source = logits[:, :, rows]  # (B, K, R', w): the few source rows this band reads
    # along the width: the same 1-D taps as the bilinear resize, by PyTorch's linear kernel
    across = F.interpolate(source.reshape(b, k * len(rows), w), size=big_w, mode="linear", align_corners=False).view(b, k, len(rows), big_w)
    top, bottom = inverse[: len(y0)], inverse[len(y0):]
    return torch.lerp(across[:, :, top], across[:, :, bottom], ty.to(logits.dtype)[:, None])


@torch.no_grad()
def predict_labels(
    model,
    images: torch.Tensor,
    mode: str = "whole",
    crop_size: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_size: Sequence[int] | None = None,
    positions: torch.Tensor | None = None,
    band_elements: int = 1 << 24,
) -> torch.Tensor:
    """``inference(...).argmax(1)``, labels ``(B, *out_size)`` int64, without the ``(B, K, *out_size)``
    probabilities: each scale's and flip's logits stay at the size the model ran at, and the
    resize to ``out_size``, the softmax, the average and the argmax run over bands of output rows
    of at most ``band_elements`` values. A 3000 x 2000 photo with 150 classes needs a 3.6 GB float
    tensor the other way; here the peak is the model's own plus about 0.3 GB."""
    out_size = tuple(int(s) for s in (out_size if out_size is not None else images.shape[-2:]))
    runs = list(_augmented_logits(model, images, mode, crop_size, stride, scales, flip, positions))
    b, k = runs[0].shape[:2]
    rows_per_band = max(1, band_elements // max(1, b * k * out_size[1]))
    labels = torch.empty((b, *out_size), dtype=torch.int64, device=images.device)
    # fp32 from the logits on: under bf16 autocast the resize's matmul would round the probabilities
    # of a low-margin pixel to ties (1/K apart by 1e-4 is below bf16's resolution) and argmax take class 0
    with torch.autocast(images.device.type, enabled=False):
        for start in range(0, out_size[0], rows_per_band):
            stop = min(start + rows_per_band, out_size[0])
            probs = _resize_rows(runs[0], out_size, start, stop).softmax(1)
            for logits in runs[1:]:
                probs += _resize_rows(logits, out_size, start, stop).softmax(1)
            labels[:, start:stop] = probs.argmax(1)
    return labels
