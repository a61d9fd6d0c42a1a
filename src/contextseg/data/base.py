"""The dataset base classes: a sample is ``(image uint8 (3, H, W), mask int64 (H, W))``.

File-backed datasets list ``(image_path, mask_path)`` pairs, read them with PIL and map the raw mask
values to train ids through a 256-entry lookup table (the dataset's label convention). Every problem
(missing root, image without mask, size mismatch, bad mask value, unreadable file) is reported with
the file it concerns; ``check()`` collects all of them instead of stopping at the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from .text import is_printable, printable

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset on disk is not in the expected form; the message names the file and the fix."""


def format_values(values: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 7, 255] -> '0..3, 7, 255'``."""
    values = sorted(set(int(v) for v in values))
    parts: list[str] = []
    start = prev = None
    for v in values + [None]:
        if start is None:
            start = prev = v
        elif v is not None and v == prev + 1:
            prev = v
        else:
            parts.append(str(start) if start == prev else f"{start}..{prev}")
            start = prev = v
    return ", ".join(parts)


DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # 100 megapixels: far above any photo, far below a decompression bomb
MAX_PIXELS_ENV = "CONTEXTSEG_MAX_IMAGE_PIXELS"


# what PIL raises for a file it cannot read: not an image, truncated, damaged, a bomb past its own limit
LOSSY_FORMATS = ("JPEG", "MPO", "JPEG2000")  # formats whose compression alters stored values (a mask's class ids)
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageTooLarge(DatasetError):
    """An image whose header declares more pixels than the limit; it is never decoded."""


def max_image_pixels() -> int:
    """The largest image (width x height, from its header) that is decoded: the environment variable
    ``CONTEXTSEG_MAX_IMAGE_PIXELS`` or 100 million. ``predict``/``explain``/``data check`` take
    ``--max-pixels`` too. Larger files (a decompression bomb declares billions) are skipped with a
    message before any memory is spent on them."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise DatasetError(f"{MAX_PIXELS_ENV}={value!r} must be a number of pixels, e.g. 200000000") from None
    if limit < 1:
        raise DatasetError(f"{MAX_PIXELS_ENV}={value!r} must be a positive number of pixels")
    return limit


def _check_pixels(width: int, height: int, what: str, limit: int | None) -> None:
    limit = max_image_pixels() if limit is None else int(limit)
    if width * height > limit:
        raise ImageTooLarge(
            f"{what} is {width}x{height} = {_pixel_count(width * height, limit)}, over the limit of {_pixel_count(limit, limit)} "
            f"(skipped; raise it with --max-pixels or {MAX_PIXELS_ENV} if the image is genuine)"
        )


def _pixel_count(count: int, limit: int) -> str:
    """``count`` in the unit of ``limit``: megapixels (as many digits as tell it from the limit) where
    the limit is a megapixel or more, else pixels ("2240 pixels", not "0.0 megapixels")."""
    if limit < 1_000_000:
        return f"{count} pixel{'s' if count != 1 else ''}"
    return f"{count / 1e6:.7g} megapixel{'s' if count != 1_000_000 else ''}"


def open_unchecked(path: Path) -> Image.Image:
    """``Image.open(path)`` without PIL's decompression-bomb check, which reads the process-wide
    ``Image.MAX_IMAGE_PIXELS``: callers check their own, settable limit on the header instead
    (`_check_pixels`), and nothing global is changed to get there, not even briefly (the demo
    reads uploads in threads). The same plugin walk as ``Image.open``: every registered format whose
    ``accept`` takes the file's first bytes, in PIL's order; the file closes with the image."""
    Image.init()  # every plugin registered (Image.open does this lazily)
    fp = open(path, "rb")
    try:
        prefix = fp.read(16)
        for name in Image.ID:
            factory, accept = Image.OPEN[name]
            try:  # what Image.open skips a plugin on: these errors from its accept or its factory
                result = not accept or accept(prefix)
                if not result or isinstance(result, str):  # a str is PIL's "looks like it, but unsupported"
                    continue
                fp.seek(0)
                img = factory(fp, str(path))
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
            img._exclusive_fp = True  # closing the image closes the file, as with Image.open(path)
            return img
    except BaseException:
        fp.close()
        raise
    fp.close()
    raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}")


@contextlib.contextmanager
def _open_image(path: Path, what: str, limit: int | None):
    """An untrusted image file opened with our pixel limit checked on the header before anything is
    decoded (PIL's own bomb check is skipped by `open_unchecked`, so that the limit is settable)."""
    img = open_unchecked(path)
    with img:
        _check_pixels(*img.size, f"{what} {path}", limit)
        yield img


def pil_to_rgb(img: Image.Image, what: str = "image", limit: int | None = None) -> np.ndarray:
    """A PIL image as displayed, as RGB uint8 ``(H, W, 3)``: EXIF orientation applied (a phone photo
    stored sideways is segmented upright, so labels match the photo as a viewer shows it); of a
    multi-frame file (GIF, TIFF pages) the first frame, with a notice; 16-bit and 32-bit grayscale
    (modes ``I;16*``, ``I``) scaled from their 16-bit range to 8 bits, float images (``F``) from
    [0, 1] (PIL's own conversion would clip them to white); alpha dropped."""
    _check_pixels(*img.size, what, limit)
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        logging.getLogger("contextseg.data").warning("%s has %d frames; the first is used", printable(what), frames)
        img.seek(0)
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = np.asarray(img).astype(np.float64)
        if img.mode == "F":
            gray = np.nan_to_num(gray, nan=0.0, posinf=255.0, neginf=0.0)
            gray = gray * 255.0 if gray.max(initial=0) <= 1.0 else gray
        elif img.mode.startswith("I;16") or gray.max(initial=0) > 255:
            gray = gray / 257.0  # 65535 -> 255
        gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), as `pil_to_rgb` describes; a file over
    `max_image_pixels` (or ``max_pixels``) is `ImageTooLarge` without being decoded."""
    try:
        with _open_image(path, "image", max_pixels) as img:
            return pil_to_rgb(img, f"image {path}", max_pixels)
    except DatasetError:
        raise
    except UNREADABLE as err:
        raise DatasetError(f"cannot read image file {path}: {err}") from err


def read_mask(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Read a single-channel label PNG as its stored values (palette indices are not converted)."""
    try:
        with _open_image(path, "mask", max_pixels) as img:
            if img.format in LOSSY_FORMATS:
                raise DatasetError(
                    f"mask {path} holds {img.format} data, a lossy format: its class ids change along every edge; "
                    "store masks as PNG (convert from the original labels, not from this file)"
                )
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise DatasetError(
                    f"mask {path} has mode {img.mode!r}; expected a single-channel label image "
                    "('L' or 'P') whose pixel values are class ids"
                )
            return np.asarray(img)
    except DatasetError:
        raise
    except UNREADABLE as err:
        raise DatasetError(f"cannot read mask file {path}: {err}") from err


def as_rgb_array(image: Any, max_pixels: int | None = None) -> np.ndarray:
    """An image for ``predict``/``explain`` as an ``(H, W, 3)`` uint8 array. Accepted, and cast:

    - a file path (`read_image`) or a PIL image (`pil_to_rgb`: the same pixels as its file);
    - a numpy array or a CPU tensor ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha
      dropped); a uint8 tensor may also be ``(3, H, W)`` (torchvision's ``read_image``). uint8 as is;
      uint16 from its 16-bit range (as a 16-bit PNG); other integers must lie in 0..255; floats in
      [0, 1] are scaled by 255 and other finite floats taken as 0..255.

    Refused with a ``ValueError`` saying what was given: empty images, NaN or infinite values,
    boolean, complex or object arrays, other shapes."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image), max_pixels)
    if isinstance(image, Image.Image):
        try:
            return pil_to_rgb(image, "the PIL image", max_pixels)
        except UNREADABLE as err:
            raise DatasetError(f"cannot read the PIL image: {err}") from err
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4) and tensor.shape[-1] in (1, 3, 4) and tensor.shape[0] * tensor.shape[-1] > 1:
            raise ValueError(f"predict() got a tensor of shape {tuple(tensor.shape)}, which reads as channels first (C, H, W) and as channels "
                             "last (H, W, C) alike; pass it unambiguously: a uint8 (H, W, 3) numpy array (tensor.permute(1, 2, 0).numpy() "
                             "for a (3, H, W) tensor), a PIL image or a file path")
        if tensor.dtype == torch.uint8 and tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4) and tensor.shape[-1] not in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        image = tensor.numpy()
    array = np.asarray(image)
    what = f"{type(image).__name__} of shape {array.shape} and dtype {array.dtype}"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
        raise ValueError(f"predict() takes arrays channels last, (H, W, 3); got {what}, which looks channels first: pass array.transpose(1, 2, 0)")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"predict() takes an image path, a PIL image, an (H, W, 3) uint8 array or a normalised float tensor (3, H, W) / (B, 3, H, W); got {what}")
    array = array[..., :3]
    if array.size == 0:
        raise ValueError(f"predict() got an empty image ({what})")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"predict() got integer pixel values {array.min()}..{array.max()}; expected 0..255 (or a uint16 image) ({what})")
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"predict() got NaN or infinite pixel values ({what})")
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"predict() got float pixel values {array.min():g}..{array.max():g}; expected [0, 1] or [0, 255] ({what})")
        scaled = array * 255.0 if array.max() <= 1.0 else array
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    raise ValueError(f"predict() cannot read {array.dtype} pixels; give uint8, uint16 or float values ({what})")


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as displayed (EXIF orientation applied), read from its header."""
    try:
        with open_unchecked(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
    except UNREADABLE as err:
        raise DatasetError(f"cannot read file {path}: {err}") from err


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8 and (H, W) labels -> uint8 (3, H, W) and int64 (H, W) tensors."""
    image_t = torch.from_numpy(image.transpose(2, 0, 1).copy())  # a copy: a 1-pixel-wide view would stay read-only
    mask_t = torch.from_numpy(mask.astype(np.int64))
    return image_t, mask_t


def median_frequency_weights(dataset: "SegmentationDataset", power: float = 1.0) -> list[float]:
    """Median frequency balancing (Eigen & Fergus, ICCV 2015; SegNet): ``w_c = (median_f / f_c) ** power``
    with ``f_c`` = pixels of class c / pixels of the images in which c occurs (ignore excluded
    from the class counts). ``power=0.5`` gives the softer square-root weights. A class that never
    occurs gets weight 1.

    Shape:
        ``-> [K]`` floats, in class order.
    """
    k = dataset.num_classes
    counts = torch.zeros(k, dtype=torch.float64)
    present_pixels = torch.zeros(k, dtype=torch.float64)
    for i in range(len(dataset)):
        mask = dataset.load_mask(i)
        valid = mask[(mask >= 0) & (mask < k)]
        c = torch.bincount(valid.flatten(), minlength=k).double()
        counts += c
        present_pixels += (c > 0).double() * mask.numel()
    seen = counts > 0
    freq = counts[seen] / present_pixels[seen]
    weights = torch.ones(k, dtype=torch.float64)
    weights[seen] = (freq.median() / freq) ** power
    return [round(float(w), 4) for w in weights]


class SegmentationDataset(Dataset):
    """Base class. ``dataset[i]`` is ``(image uint8 (3, H, W), mask int64 (H, W))`` or, with
    ``transforms``, whatever ``transforms(image, mask)`` returns.

    Subclasses set ``classes``, ``palette``, ``base_size`` (the ``(long, short)`` scale that the
    transforms rescale to; None = the image's own size) and implement ``__len__`` and ``load``.
    """

    name: str = ""
    classes: tuple[str, ...] = ()
    palette: list[tuple[int, int, int]] = []
    ignore_index: int = IGNORE_INDEX
    base_size: tuple[int, int] | None = None
    splits: tuple[str, ...] = ("train", "val")

    def __init__(self, split: str = "train", transforms: Callable | None = None):
        self.split = split
        self.transforms = transforms
        self.cache = False  # keep each decoded sample in memory after its first read
        self._cached: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The untransformed sample ``index``."""
        raise NotImplementedError

    def load_mask(self, index: int) -> torch.Tensor:
        """Only the int64 (H, W) mask of sample ``index`` (e.g. for class statistics)."""
        return self.load(index)[1]

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, mask = self._load_cached(index % len(self)) if self.cache else self.load(index % len(self))
        if self.transforms is None:
            return image, mask
        return self.transforms(image, mask)

    def image_sizes(self, limit: int = 1000) -> list[tuple[int, int]]:
        """(H, W) of up to ``limit`` images, evenly spread (file datasets read only the headers)."""
        step = max(1, len(self) // limit)
        return [tuple(self.load(i)[0].shape[-2:]) for i in range(0, len(self), step)]

    def _load_cached(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``load(index)`` decoded once and then kept in memory, the mask as uint8 when it fits
        (each DataLoader worker process keeps its own copy)."""
        if index not in self._cached:
            image, mask = self.load(index)
            small = mask.min() >= 0 and mask.max() <= 255
            self._cached[index] = (image, mask.to(torch.uint8) if small else mask)
        image, mask = self._cached[index]
        return image, mask.long()

    def check(self) -> list[str]:
        """Load every sample and return every problem found, as readable lines (empty: all good)."""
        problems = []
        for i in range(len(self)):
            try:
                self.load(i)
            except DatasetError as err:
                problems.append(str(err))
        return problems

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, samples={len(self)}, "
            f"classes={self.num_classes}, base_size={self.base_size})"
        )


class FileSegmentationDataset(SegmentationDataset):
    """A dataset stored as image files and label PNGs.

    Subclasses describe the layout with ``layout`` (for error messages), find the root with
    ``resolve_root``, say where a split lives with ``split_marker`` and list the pairs with
    ``find_samples``; ``label_table()`` gives the raw-value -> train-id lookup table.
    With ``strict=False`` problems found while listing are kept in ``self.problems`` (for
    ``check()``) instead of raised.
    """

    layout: str = ""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Callable | None = None,
        *,
        strict: bool = True,
    ):
        super().__init__(split=split, transforms=transforms)
        if root is None:
            raise FileNotFoundError(
                f"{type(self).__name__} needs a root folder; expected layout: {self.layout}"
            )
        given = Path(root).expanduser()
        if not given.is_dir():
            raise FileNotFoundError(
                f"{self.name} root {given} does not exist or is not a folder; "
                f"expected layout: {self.layout}"
            )
        self.root = self.resolve_root(given)
        self.strict = strict
        self.problems: list[str] = []
        self.samples: list[tuple[Path, Path]] = []
        self.find_samples()
        self._lut, self._valid = self._build_lut()
        if strict and self.problems:
            more = len(self.problems) - 1
            extra = f" (and {more} more problem(s); `contextseg data check` lists them all)" if more else ""
            raise DatasetError(self.problems[0] + extra)
        if strict and not self.samples:
            raise DatasetError(
                f"{self.name} split {split!r} under {self.root} has no samples; "
                f"expected layout: {self.layout}"
            )

    # -- layout, overridden by subclasses ---------------------------------------------------------
    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        return root

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        """The file or folder whose existence means ``split`` is present under ``root``."""
        raise NotImplementedError

    def find_samples(self) -> None:
        """Fill ``self.samples``; append problems (image without mask, ...) to ``self.problems``."""
        raise NotImplementedError

    def label_table(self) -> np.ndarray:
        """Raw mask value -> train id, a (256,) integer array. Default: values are train ids."""
        return np.arange(256)

    # -- shared machinery --------------------------------------------------------------------------
    def _build_lut(self) -> tuple[np.ndarray, np.ndarray]:
        table = np.asarray(self.label_table(), dtype=np.int64)
        valid = (table < self.num_classes) | (table == self.ignore_index)
        return np.where(valid, table, self.ignore_index).astype(np.uint8), valid

    def pair_images_with_masks(self, images: Iterable[Path], mask_for: Callable[[Path], Path], masks: Iterable[Path] = ()) -> None:
        """Append ``(image, mask_for(image))`` for each image; a missing mask is a problem, and
        (when checking, ``strict=False``) so is each of ``masks`` that no image claims (an orphan)."""
        claimed: dict[Path, Path] = {}
        for image in sorted(images):
            mask = mask_for(image)
            if mask in claimed:  # two images sharing a stem (a.png and a.jpg): one mask for both
                self.problems.append(f"images {claimed[mask]} and {image} share the name {image.stem!r}: both would be trained "
                                     f"against the one mask {mask}; rename or remove one of them")
                continue
            claimed[mask] = image
            if mask.is_file():
                self.samples.append((image, mask))
            else:
                self.problems.append(f"image {image} has no mask: expected {mask}")
        if not self.strict:
            for mask in sorted(set(masks) - set(claimed)):
                self.problems.append(f"mask {mask} has no image (no image of the {self.split!r} split maps to it)")

    class_list: Path | None = None  # the file the class names were read from, if any (folder: classes.txt)

    def text_problems(self) -> list[str]:
        """Class names and file names holding control or format characters (an escape sequence, a
        carriage return, a right-to-left override, a zero-width space): they would garble a terminal
        or a log, or make two names look alike. contextseg shows them escaped wherever it prints
        them; ``check()`` reports them, escaped, so that they get renamed."""
        problems = []
        where = f"class list {printable(self.class_list)}" if self.class_list is not None else f"{self.name} classes"
        for index, name in enumerate(self.classes):
            if not is_printable(name):
                problems.append(f"{where}: class {index} is named '{printable(name)}', which holds control or format characters "
                                "(shown escaped) that would garble a terminal or log; use plain text")
        for path in dict.fromkeys(p for sample in self.samples for p in sample):
            if not is_printable(path.relative_to(self.root) if path.is_relative_to(self.root) else path):  # a root the user typed is theirs
                problems.append(f"file name {printable(path)} holds control or format characters (shown escaped) that would garble "
                                "a terminal or log; rename it")
        return problems

    def require_dir(self, path: Path, what: str) -> bool:
        if path.is_dir():
            return True
        self.problems.append(
            f"{what} folder {path} does not exist (split {self.split!r}); expected layout: {self.layout}"
        )
        return False

    def __len__(self) -> int:
        return len(self.samples)

    def _read_checked(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
        image_path, mask_path = self.samples[index]
        problems = []
        image = raw = None
        try:
            image = read_image(image_path)
        except DatasetError as err:
            problems.append(str(err))
        try:
            raw = read_mask(mask_path)
        except DatasetError as err:
            problems.append(str(err))
        if image is not None and raw is not None and image.shape[:2] != raw.shape[:2]:
            problems.append(self._size_message(mask_path, raw.shape, image_path, image.shape))
        if raw is not None:
            bad = self._bad_values(raw)
            if bad:
                problems.append(self._bad_values_message(mask_path, bad))
        return image, raw, problems

    @staticmethod
    def _size_message(mask_path, mask_shape, image_path, image_shape) -> str:
        return (
            f"mask {mask_path} is {mask_shape[1]}x{mask_shape[0]} (WxH) but its image {image_path} "
            f"is {image_shape[1]}x{image_shape[0]}; they must have the same size"
        )

    def _bad_values_message(self, mask_path, bad) -> str:
        return (
            f"mask {mask_path} has values {format_values(bad)} that are neither a class nor the "
            f"ignore index; valid stored values are {format_values(np.flatnonzero(self._valid))} "
            f"(mapping to classes 0..{self.num_classes - 1} or ignore {self.ignore_index})"
        )

    def _bad_values(self, raw: np.ndarray) -> list[int]:
        if raw.dtype != np.uint8:
            raw = raw.astype(np.int64)
            big = np.unique(raw[(raw > 255) | (raw < 0)]).tolist()
            raw = np.clip(raw, 0, 255).astype(np.uint8)
        else:
            big = []
        present = np.bincount(raw.ravel(), minlength=256) > 0
        return np.flatnonzero(present & ~self._valid).tolist() + big

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, raw, problems = self._read_checked(index)
        if problems:
            raise DatasetError("; ".join(problems))
        return to_tensors(image, self._lut[raw])

    def image_sizes(self, limit: int = 1000) -> list[tuple[int, int]]:
        step = max(1, len(self) // limit)
        return [image_size(self.samples[i][0]) for i in range(0, len(self), step)]

    def load_mask(self, index: int) -> torch.Tensor:
        image_path, mask_path = self.samples[index]
        raw = read_mask(mask_path)
        bad = self._bad_values(raw)
        if bad:
            raise DatasetError(self._bad_values_message(mask_path, bad))
        if raw.shape != image_size(image_path):
            h, w = image_size(image_path)
            raise DatasetError(self._size_message(mask_path, raw.shape, image_path, (h, w)))
        return torch.from_numpy(self._lut[raw].astype(np.int64))

    def check(self) -> list[str]:
        problems = list(self.problems) + self.text_problems()
        for i in range(len(self.samples)):
            problems.extend(self._read_checked(i)[2])
        return problems

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", root='{self.root}')"
