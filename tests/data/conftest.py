"""Helpers that write tiny datasets in their real on-disk layouts."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, height: int = 12, width: int = 16, seed: int = 0) -> np.ndarray:
    """A random RGB image (PNG or JPEG by suffix); returns the array as written (PNG only exact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def write_mask(path: Path, values) -> np.ndarray:
    """A single-channel 'L' PNG with the given (H, W) values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(values, dtype=np.uint8)
    Image.fromarray(array, mode="L").save(path)
    return array


def ramp_mask(height: int, width: int, values) -> np.ndarray:
    """(H, W) mask cycling through ``values`` along the columns."""
    values = np.asarray(values, dtype=np.uint8)
    return np.tile(values[np.arange(width) % len(values)], (height, 1))
