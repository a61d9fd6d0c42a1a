"""Cityscapes: 19 evaluation classes on trainIds, plus the labelIds -> labelTrainIds conversion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from .base import DatasetError, FileSegmentationDataset, format_values, read_mask
from .io import atomic_write
from .palettes import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAINID_SUFFIX = "_gtFine_labelTrainIds.png"
LABELID_SUFFIX = "_gtFine_labelIds.png"
FRAME_NAME = "<city>_<6 digits>_<6 digits>_leftImg8bit.png"  # a frame as the benchmark names it: aachen_000000_000019_leftImg8bit.png
_FRAME = re.compile(r"[a-z]+(?:-[a-z]+)*_[0-9]{6}_[0-9]{6}_leftImg8bit\.png", re.ASCII)  # cities: lower case, some with a hyphen (bad-honnef)


def is_cityscapes_frame(name: str) -> bool:
    """Whether ``name`` (a file name) is a Cityscapes frame, `FRAME_NAME`, as the benchmark
    server and ``cityscapesscripts`` match predictions to ground truth."""
    return _FRAME.fullmatch(name) is not None


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
    """(256,) uint8 lookup table labelId -> trainId (every id not in the table -> 255). For a
    labelIds image use `label_ids_to_train_ids`, which refuses the ids the table lacks."""
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        if label_id >= 0:
            table[label_id] = train_id
    return table


def label_ids_to_train_ids(label_ids, source: str = "label ids") -> np.ndarray:
    """A ``*_gtFine_labelIds.png`` image (any integer array: 8-bit, 16-bit, 32-bit) as train ids
    (uint8: 0..18, 255 ignored) by the official table, value by value: nothing is cast to 8 bits
    first, so 263 is not taken for 7 (road). An id the table does not hold (above 33, below -1,
    the license plate's id, or in a gap of the table) is a `DatasetError` naming ``source``
    and the ids."""
    ids = np.asarray(label_ids)
    if ids.dtype == bool:
        ids = ids.astype(np.uint8)
    if not np.issubdtype(ids.dtype, np.integer):
        raise DatasetError(f"{source} holds {ids.dtype} values; Cityscapes label ids are integers")
    known = np.array(sorted(CITYSCAPES_ID_TO_TRAINID), dtype=np.int64)
    low, high = int(known[0]), int(known[-1])
    table = np.full(high - low + 1, -1, dtype=np.int64)  # -1: an id the official table does not hold
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        table[label_id - low] = train_id
    inside = (ids >= low) & (ids <= high)  # compared in the image's own type: no value wraps
    offsets = np.zeros(ids.shape, dtype=np.int64)
    offsets[inside] = ids[inside].astype(np.int64) - low  # small values: exact in any type
    train_ids = np.where(inside, table[offsets], -1)
    bad = np.unique(ids[train_ids < 0])
    if bad.size:
        shown = format_values(bad[:50]) + (f" and {bad.size - 50} more" if bad.size > 50 else "")
        raise DatasetError(f"{source} holds label id(s) {shown} that the official Cityscapes label table does not have "
                           f"(its ids: {format_values(known)}); it is not a labelIds image "
                           "of gtFine (restore the original file, or write it again from its polygons with cityscapesscripts)")
    return train_ids.astype(np.uint8)


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
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"Cityscapes train ids are integers 0..18 (255: ignore), got {array.dtype} values")
    bad = np.unique(array[((array < 0) | (array > 18)) & (array != 255)])  # each value: 19 beside a 255 is refused too
    if bad.size:
        raise ValueError(f"Cityscapes train ids are 0..18 (255: ignore), got values {format_values(bad[:50])}")
    return trainid_to_labelid_table()[array.astype(np.int64)]


def prepare_cityscapes(root: str | Path) -> int:
    """Write every missing ``*_gtFine_labelTrainIds.png`` under ``root/gtFine`` from its
    ``*_gtFine_labelIds.png`` with the official id -> trainId table. Returns how many were written.
    A labelIds file holding an id the table does not have (a 16-bit 263, which an 8-bit cast would
    have turned into road) is refused, naming the file and the ids; the files written before it stay."""
    root = Path(root).expanduser()
    gt_dir = root / "gtFine"
    if not gt_dir.is_dir():
        raise FileNotFoundError(
            f"{gt_dir} does not exist; expected ROOT/gtFine/<split>/<city>/*{LABELID_SUFFIX}"
        )
    written = 0
    for label_ids in sorted(gt_dir.glob(f"*/*/*{LABELID_SUFFIX}")):
        target = label_ids.with_name(label_ids.name[: -len(LABELID_SUFFIX)] + TRAINID_SUFFIX)
        if target.exists():
            continue
        train_ids = label_ids_to_train_ids(read_mask(label_ids), f"labelIds file {label_ids}")  # before anything is written
        with atomic_write(target) as tmp:  # whole or not at all, never through a link
            Image.fromarray(train_ids).save(tmp, format="PNG")
        written += 1
    return written
