"""Training and evaluation transforms: the mmsegmentation pipeline on torchvision ``transforms.v2``.

Train: random rescale of a base scale (ratio 0.5-2.0, keep ratio) -> random crop re-drawn while one
class covers more than ``cat_max_ratio`` of it -> horizontal flip -> photometric distortion ->
normalise -> pad to the crop size (0 image, 255 mask). Eval: rescale to the base scale, normalise,
the mask stays at its original resolution. Optionally each output row carries its absolute vertical
position in the original image (HANet), carried through the geometry as a per-pixel row map.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def row_tops(height: int, device=None) -> torch.Tensor:
    """Each row's top edge as a fraction of the image height: ``(H,)`` float32, ``r / H``.

    This is HANet's row map (the release stores ``r * 128 // H``), so that ``floor(16 * r / H)``
    is the 1/16 band of the image the row lies in, exactly as the release computes it.
    """
    return torch.arange(height, device=device, dtype=torch.float32) / height


class RowPositions(tv_tensors.Mask):
    """A float (1, H, W) map whose value at row r is that row's height in the original image,
    r / H. Being a Mask, the v2 geometric kernels resize it by nearest neighbour."""

    @classmethod
    def like_image(cls, height: int, width: int) -> RowPositions:
        return cls(row_tops(height).view(1, height, 1).expand(1, height, width).contiguous())


def rescale_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with a (long, short) scale: the largest size that keeps the aspect
    ratio and fits the long edge in ``max(scale)`` and the short edge in ``min(scale)``."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))  # never an empty side


def resize_image(image: torch.Tensor, size: list[int], antialias: bool = True) -> tv_tensors.Image:
    """Bilinear resize of a ``(C, H, W)`` image to ``size`` (h, w), its dtype kept. A uint8 image
    resized to 1 x 1 with antialiasing goes through float32: torch's uint8 antialiased kernel fails an
    internal assert for that one output size (torch 2.14, AVX), which a tiny base size or scale reaches."""
    image = tv_tensors.Image(image)
    if antialias and image.dtype == torch.uint8 and list(size) == [1, 1]:
        resized = F.resize(image.as_subclass(torch.Tensor).float(), list(size), antialias=True)
        return tv_tensors.Image(resized.round_().clamp_(0, 255).to(torch.uint8))
    return F.resize(image, list(size), antialias=antialias)


def _label_mask(flat_inputs: list[Any]) -> torch.Tensor | None:
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Mask) and not isinstance(inpt, RowPositions):
            return inpt
    return None


class RandomRescale(v2.Transform):
    """mmseg ``RandomResize(scale=base_size, ratio_range, keep_ratio=True)``: target scale =
    ``base_size * r``, r ~ U(ratio_range); ``base_size=None`` uses the image's own size. Images are
    resized bilinearly with antialiasing, masks by nearest neighbour."""

    def __init__(self, base_size: tuple[int, int] | None, ratio_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__()
        self.base_size = tuple(base_size) if base_size is not None else None
        self.ratio_range = tuple(ratio_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.ratio_range
        ratio = low + (high - low) * float(torch.rand(()))
        base = self.base_size or (max(height, width), min(height, width))
        target = (int(base[0] * ratio), int(base[1] * ratio))
        return {"size": list(rescale_size(height, width, target))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Image):
            return resize_image(inpt, params["size"])
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


class RandomCropCatRatio(v2.Transform):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``: a uniformly placed crop (the whole image
    along a side shorter than the crop), re-drawn up to 10 times while a single class covers
    ``cat_max_ratio`` or more of the crop's non-ignored pixels (or it holds one class only)."""

    def __init__(self, crop_size: tuple[int, int], cat_max_ratio: float = 0.75, ignore_index: int = 255):
        super().__init__()
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _draw(self, height: int, width: int) -> tuple[int, int, int, int]:
        top = int(torch.randint(max(height - self.crop_size[0], 0) + 1, ()))
        left = int(torch.randint(max(width - self.crop_size[1], 0) + 1, ()))
        return top, left, min(self.crop_size[0], height), min(self.crop_size[1], width)

    def _acceptable(self, mask: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
        top, left, h, w = box
        counts = torch.bincount(mask[..., top : top + h, left : left + w].reshape(-1).long(), minlength=256)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        box = self._draw(height, width)
        mask = _label_mask(flat_inputs)
        tries = 1
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(10):
                if self._acceptable(mask, box):
                    break
                box = self._draw(height, width)
                tries += 1
        return {"top": box[0], "left": box[1], "height": box[2], "width": box[3], "tries": tries}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            F.crop, inpt, top=params["top"], left=params["left"], height=params["height"], width=params["width"]
        )


class PhotoMetricDistortion(v2.RandomPhotometricDistort):
    """mmseg ``PhotoMetricDistortion`` on float images in [0, 1]: each step with probability ``p``,
    additive brightness in ±``brightness_delta``, contrast (before or after the colour steps),
    saturation and hue; unlike the parent class it never permutes channels. Masks pass through."""

    def __init__(
        self,
        brightness_delta: float = 32 / 255,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-18 / 180, 18 / 180),
        p: float = 0.5,
    ):
        super().__init__(
            brightness=(-brightness_delta, brightness_delta), contrast=contrast, saturation=saturation, hue=hue, p=p
        )

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        def maybe(low: float, high: float) -> float | None:
            return low + (high - low) * float(torch.rand(())) if float(torch.rand(())) < self.p else None

        return {
            "brightness_delta": maybe(*self.brightness),
            "contrast_factor": maybe(*self.contrast),
            "saturation_factor": maybe(*self.saturation),
            "hue_factor": maybe(*self.hue),
            "contrast_before": bool(torch.rand(()) < 0.5),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if not inpt.is_floating_point():
            raise TypeError("PhotoMetricDistortion expects a float image in [0, 1]; convert it first")
        if params["brightness_delta"] is not None:
            inpt = tv_tensors.wrap((inpt + params["brightness_delta"]).clamp_(0.0, 1.0), like=inpt)
        contrast = params["contrast_factor"]
        if contrast is not None and params["contrast_before"]:
            inpt = F.adjust_contrast(inpt, contrast_factor=contrast)
        if params["saturation_factor"] is not None:
            inpt = F.adjust_saturation(inpt, saturation_factor=params["saturation_factor"])
        if params["hue_factor"] is not None:
            inpt = F.adjust_hue(inpt, hue_factor=params["hue_factor"])
        if contrast is not None and not params["contrast_before"]:
            inpt = F.adjust_contrast(inpt, contrast_factor=contrast)
        return inpt


def _normalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 or [0, 1] float (3, H, W) -> float32 normalised."""
    if not image.is_floating_point():
        image = image.float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (image.as_subclass(torch.Tensor) - mean_t) / std_t


def _pad_to(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """Pad the last two dims at the bottom/right to (height, width)."""
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, max(pad_w, 0), 0, max(pad_h, 0)), value=value)


class TrainTransform:
    """``transform(image uint8 (3,H,W), mask int (H,W))`` -> ``{"image": float32 (3,ch,cw),
    "mask": int64 (ch,cw)}`` (+ ``"positions": float32 (ch,)`` with ``with_positions``).

    ``mean``/``std`` are for images scaled to [0, 1]. ``positions[r]`` is output row r's height in
    the original image as a fraction in [0, 1] (the row's top edge, r / H); padded rows get 1.0.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] | int,
        base_size: tuple[int, int] | None = None,
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        ignore_index: int = 255,
        with_positions: bool = False,
    ):
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.base_size = tuple(base_size) if base_size is not None else None
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index
        self.with_positions = with_positions
        self.geometric = v2.Compose(
            [
                RandomRescale(self.base_size, ratio_range),
                RandomCropCatRatio(self.crop_size, cat_max_ratio, ignore_index),
                v2.RandomHorizontalFlip(flip_prob),
            ]
        )
        self.photometric = PhotoMetricDistortion() if photometric else None

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if mask.max() > 255 or mask.min() < 0:
            raise ValueError(f"mask values must lie in 0..255, got {int(mask.min())}..{int(mask.max())}")
        inputs = [tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8))]
        if self.with_positions:
            inputs.append(RowPositions.like_image(*image.shape[-2:]))
        outputs = self.geometric(*inputs)
        image_t = F.to_dtype(outputs[0], torch.float32, scale=True)
        if self.photometric is not None:
            image_t = self.photometric(image_t)
        ch, cw = self.crop_size
        result = {
            "image": _pad_to(_normalize(image_t, self.mean, self.std), ch, cw, 0.0),
            "mask": _pad_to(outputs[1].as_subclass(torch.Tensor), ch, cw, self.ignore_index).long(),
        }
        if self.with_positions:
            column = outputs[2].as_subclass(torch.Tensor)[0, :, 0]
            result["positions"] = _pad_to(column.view(1, -1), 1, ch, 1.0).view(-1)
        return result

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, base_size={self.base_size}, "
            f"steps={self.geometric.transforms + ([self.photometric] if self.photometric else [])}, "
            f"with_positions={self.with_positions})"
        )


class EvalTransform:
    """Rescale the image to ``base_size`` (long, short; keep ratio; None = no resize) and normalise;
    the mask stays at its original resolution, where the metric is computed. Returns the same keys
    as ``TrainTransform``; ``positions`` are r / h of the resized image's rows. ``antialias=False``
    resizes as mmcv's ``imresize`` (cv2 bilinear, half-pixel centres, no low-pass filter), which
    mmsegmentation's test pipelines use."""

    def __init__(
        self,
        base_size: tuple[int, int] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        with_positions: bool = False,
        antialias: bool = True,
    ):
        self.base_size = tuple(base_size) if base_size is not None else None
        self.mean, self.std = tuple(mean), tuple(std)
        self.with_positions = with_positions
        self.antialias = antialias

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.base_size is not None:
            size = rescale_size(*image.shape[-2:], self.base_size)
            image = resize_image(image, list(size), antialias=self.antialias)
        result = {"image": _normalize(image, self.mean, self.std), "mask": mask.long()}
        if self.with_positions:
            result["positions"] = row_tops(image.shape[-2])
        return result

    def __repr__(self) -> str:
        return f"EvalTransform(base_size={self.base_size}, with_positions={self.with_positions})"


def denormalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo the normalisation: float (..., 3, H, W) -> uint8 (..., 3, H, W) for display."""
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image * std_t + mean_t).mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "PhotoMetricDistortion",
    "RandomCropCatRatio",
    "RandomRescale",
    "RowPositions",
    "TrainTransform",
    "denormalize",
    "rescale_size",
    "row_tops",
]
