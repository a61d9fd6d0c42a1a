"""ADE20K (MIT SceneParsing, ADEChallengeData2016): 150 classes, 0 = "other" is ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FileSegmentationDataset
from .palettes import ADE20K_CLASSES, ADE20K_PALETTE


class ADE20KDataset(FileSegmentationDataset):
    """``ADEChallengeData2016/images/{training,validation}/*.jpg`` with
    ``annotations/{training,validation}/*.png``.

    ``root`` is the folder that holds ``ADEChallengeData2016`` or that folder itself; ``split`` is
    ``train``/``val`` (or ``training``/``validation``). Labels follow mmseg's ``reduce_zero_label``:
    stored 0 -> 255, stored k -> k - 1.
    """

    name = "ade20k"
    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE
    base_size = (2048, 512)
    layout = (
        "ROOT/ADEChallengeData2016/images/{training,validation}/*.jpg and "
        "ROOT/ADEChallengeData2016/annotations/{training,validation}/*.png (same stem)"
    )
    SPLIT_DIRS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        nested = root / "ADEChallengeData2016"
        return nested if nested.is_dir() else root

    @classmethod
    def split_dir(cls, split: str) -> str:
        if split not in cls.SPLIT_DIRS:
            raise ValueError(f"ade20k has splits 'train' and 'val' (or 'training'/'validation'), got {split!r}")
        return cls.SPLIT_DIRS[split]

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        return cls.resolve_root(root) / "images" / cls.split_dir(split)

    def find_samples(self) -> None:
        sub = self.split_dir(self.split)
        image_dir = self.root / "images" / sub
        mask_dir = self.root / "annotations" / sub
        if self.require_dir(image_dir, "image") and self.require_dir(mask_dir, "annotation"):
            self.pair_images_with_masks(image_dir.glob("*.jpg"), lambda p: mask_dir / f"{p.stem}.png", mask_dir.glob("*.png"))

    def label_table(self) -> np.ndarray:
        table = np.arange(256) - 1
        table[0] = self.ignore_index
        table[255] = self.ignore_index
        return table
