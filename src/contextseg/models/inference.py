"""Inference: whole image or sliding window, with multi-scale + flip test-time augmentation.

All functions take normalised images ``(B, 3, H, W)`` and a model in eval mode that maps them to
logits at the input size. Sliding windows always have exactly the window size (smaller images and
border windows are zero-padded and the padding cropped off the logits), which CPNet's fixed prior
size requires. For height-aware models (HANet) each window gets the absolute row positions of the
rows it covers.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.transforms import row_tops
from ..modules.common import resize

__all__ = ["inference", "slide_inference", "whole_inference", "row_positions", "slide_windows"]


def row_positions(batch: int, height: int, device=None) -> torch.Tensor:
    """Row positions of a full image as fractions of its height: ``(B, H)`` = ``r / H``."""
    return row_tops(height, device).expand(batch, height)


def _uses_positions(model) -> bool:
    return bool(getattr(getattr(model, "module", model), "uses_positions", False))


def _call(model, images: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    if positions is not None and _uses_positions(model):
        return model(images, positions=positions)
    return model(images)


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
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide" and crop_size is None:
        raise ValueError("slide inference needs crop_size (the training crop, (h, w))")
    h, w = images.shape[-2:]
    out_size = tuple(out_size) if out_size is not None else (h, w)
    wants_pos = _uses_positions(model)
    if wants_pos and positions is None:
        positions = row_positions(images.shape[0], h, images.device)
    probs = None
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
            p = resize(logits.float(), out_size).softmax(1)
            probs = p if probs is None else probs + p
    return probs / (len(scales) * (2 if flip else 1))
