"""Pascal Context: 59 classes (background ignored) or the 60-class variant with background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FileSegmentationDataset
from .palettes import (
    PASCAL_CONTEXT_59_CLASSES,
    PASCAL_CONTEXT_59_PALETTE,
    PASCAL_CONTEXT_60_CLASSES,
    PASCAL_CONTEXT_60_PALETTE,
)


class PascalContextDataset(FileSegmentationDataset):
    """``VOCdevkit/VOC2010/JPEGImages/*.jpg``, ``SegmentationClassContext/*.png`` and the id lists
    ``ImageSets/SegmentationContext/{train,val}.txt``.

    ``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2010``. With
    ``reduce_zero_label=True`` (default, the 59-class benchmark) stored 0 (background) -> 255 and
    k -> k - 1; with False the 60 classes keep background as class 0.
    """

    name = "pascal_context"
    base_size = (520, 520)
    layout = (
        "ROOT/VOCdevkit/VOC2010/JPEGImages/<id>.jpg, ROOT/VOCdevkit/VOC2010/SegmentationClassContext/"
        "<id>.png and ROOT/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt (one id a line)"
    )

    def __init__(self, root, split="train", transforms=None, *, reduce_zero_label=True, strict=True):
        self.reduce_zero_label = reduce_zero_label
        self.classes = PASCAL_CONTEXT_59_CLASSES if reduce_zero_label else PASCAL_CONTEXT_60_CLASSES
        self.palette = PASCAL_CONTEXT_59_PALETTE if reduce_zero_label else PASCAL_CONTEXT_60_PALETTE
        super().__init__(root, split, transforms, strict=strict)

    @classmethod
    def resolve_root(cls, root: Path) -> Path:
        for candidate in (root / "VOCdevkit" / "VOC2010", root / "VOC2010"):
            if candidate.is_dir():
                return candidate
        return root

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        return cls.resolve_root(root) / "ImageSets" / "SegmentationContext" / f"{split}.txt"

    def find_samples(self) -> None:
        list_file = self.split_marker(self.root, self.split)
        image_dir = self.root / "JPEGImages"
        mask_dir = self.root / "SegmentationClassContext"
        if not list_file.is_file():
            self.problems.append(
                f"split file {list_file} does not exist; expected layout: {self.layout}"
            )
            return
        if not (self.require_dir(image_dir, "image") and self.require_dir(mask_dir, "annotation")):
            return
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        images = []
        for sample_id in ids:
            image = image_dir / f"{sample_id}.jpg"
            if image.is_file():
                images.append(image)
            else:
                self.problems.append(f"image {image} listed in {list_file} does not exist")
        self.pair_images_with_masks(images, lambda p: mask_dir / f"{p.stem}.png")

    def label_table(self) -> np.ndarray:
        table = np.arange(256)
        if self.reduce_zero_label:
            table = table - 1
            table[0] = self.ignore_index
        table[255] = self.ignore_index
        return table
