"""CamVid in SegNet's 11-class layout (480 x 360): value 11 (Unlabelled) is ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import IMAGE_EXTENSIONS, FileSegmentationDataset
from .palettes import CAMVID_CLASSES, CAMVID_PALETTE


class CamVidDataset(FileSegmentationDataset):
    """``ROOT/{train,val,test}/*.png`` with ``ROOT/{train,val,test}annot/*.png`` (same file name)."""

    name = "camvid"
    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    base_size = (480, 360)
    splits = ("train", "val", "test")
    layout = "ROOT/{train,val,test}/*.png with ROOT/{train,val,test}annot/*.png (same file name)"

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        return root / split

    def find_samples(self) -> None:
        image_dir = self.root / self.split
        mask_dir = self.root / f"{self.split}annot"
        if self.require_dir(image_dir, "image") and self.require_dir(mask_dir, "annotation"):
            images = [p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
            self.pair_images_with_masks(images, lambda p: mask_dir / f"{p.stem}.png", mask_dir.glob("*.png"))

    def label_table(self) -> np.ndarray:
        table = np.arange(256)
        table[11] = self.ignore_index
        return table
