"""Cityscapes: 19 evaluation classes on trainIds, plus the labelIds -> labelTrainIds conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import FileSegmentationDataset, read_mask
from .io import atomic_write
from .palettes import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAINID_SUFFIX = "_gtFine_labelTrainIds.png"
LABELID_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(FileSegmentationDataset):
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (write them with ``prepare_cityscapes``)."""

    name = "cityscapes"
    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    base_size = (2048, 1024)
    splits = ("train", "val", "test")
    layout = (
        "ROOT/leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png with "
        "ROOT/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png"
    )

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        return root / "leftImg8bit" / split

    def find_samples(self) -> None:
        image_dir = self.root / "leftImg8bit" / self.split
        mask_dir = self.root / "gtFine" / self.split
        if not (self.require_dir(image_dir, "image") and self.require_dir(mask_dir, "annotation")):
            return

        def mask_for(image: Path) -> Path:
            base = image.name[: -len(IMAGE_SUFFIX)]
            return mask_dir / image.parent.name / f"{base}{TRAINID_SUFFIX}"

        before = len(self.problems)
        self.pair_images_with_masks(image_dir.glob(f"*/*{IMAGE_SUFFIX}"), mask_for)
        if len(self.problems) > before and any(mask_dir.glob(f"*/*{LABELID_SUFFIX}")):
            self.problems[before] += (
                f"; the labelIds files are there: run `contextseg data prepare cityscapes {self.root}` "
                "(contextseg.data.prepare_cityscapes) to write the labelTrainIds"
            )


def id_to_trainid_table() -> np.ndarray:
    """(256,) uint8 lookup table labelId -> trainId (every id not in the table -> 255)."""
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        if label_id >= 0:
            table[label_id] = train_id
    return table


def trainid_to_labelid_table() -> np.ndarray:
    """``table[train_id] -> label_id`` (256 entries, uint8): each of the 19 train ids back to the
    34-id scheme of ``*_gtFine_labelIds.png`` and the benchmark server (road 0 -> 7, ..., bicycle
    18 -> 33); 255 (ignore) maps to 0 (unlabeled)."""
    table = np.zeros(256, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        if 0 <= label_id and train_id != 255:
            table[train_id] = label_id
    return table


def to_cityscapes_label_ids(train_ids) -> np.ndarray:
    """A prediction in the 19 train ids (``model.predict`` of a Cityscapes model, any integer array
    or tensor ``(H, W)``) as the label ids the Cityscapes benchmark server and
    ``cityscapesscripts``' ``evalPixelLevelSemanticLabeling`` read: save it as an 8-bit PNG named
    ``<city>_<seq>_<frame>_leftImg8bit.png``."""
    array = np.asarray(train_ids.cpu() if hasattr(train_ids, "cpu") else train_ids)
    if array.size and (array.min() < 0 or (array.max() > 18 and array.max() != 255)):
        raise ValueError(f"Cityscapes train ids are 0..18 (255: ignore), got values {int(array.min())}..{int(array.max())}")
    return trainid_to_labelid_table()[array.astype(np.int64).clip(0, 255)]


def prepare_cityscapes(root: str | Path) -> int:
    """Write every missing ``*_gtFine_labelTrainIds.png`` under ``root/gtFine`` from its
    ``*_gtFine_labelIds.png`` with the official id -> trainId table. Returns how many were written."""
    root = Path(root).expanduser()
    gt_dir = root / "gtFine"
    if not gt_dir.is_dir():
        raise FileNotFoundError(
            f"{gt_dir} does not exist; expected ROOT/gtFine/<split>/<city>/*{LABELID_SUFFIX}"
        )
    table = id_to_trainid_table()
    written = 0
    for label_ids in sorted(gt_dir.glob(f"*/*/*{LABELID_SUFFIX}")):
        target = label_ids.with_name(label_ids.name[: -len(LABELID_SUFFIX)] + TRAINID_SUFFIX)
        if target.exists():
            continue
        with atomic_write(target) as tmp:  # whole or not at all, never through a link
            Image.fromarray(table[read_mask(label_ids).astype(np.uint8)]).save(tmp, format="PNG")
        written += 1
    return written
