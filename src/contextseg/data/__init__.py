"""Datasets, transforms and the synthetic street-scene generator."""

from __future__ import annotations

from pathlib import Path

from .ade20k import ADE20KDataset
from .base import DatasetError, FileSegmentationDataset, SegmentationDataset
from .camvid import CamVidDataset
from .cityscapes import CityscapesDataset, prepare_cityscapes, to_cityscapes_label_ids
from .folder import FolderDataset
from .palettes import colorize
from .pascal_context import PascalContextDataset
from .synthetic import SyntheticStreetScenes, export_synthetic
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, denormalize

DATASETS: dict[str, type[SegmentationDataset]] = {
    "ade20k": ADE20KDataset,
    "cityscapes": CityscapesDataset,
    "pascal_context": PascalContextDataset,
    "camvid": CamVidDataset,
    "folder": FolderDataset,
    "synthetic": SyntheticStreetScenes,
}


def _dataset_class(name: str) -> type[SegmentationDataset]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def build_dataset(name: str, root, split: str = "train", transforms=None, **kwargs) -> SegmentationDataset:
    """``DATASETS[name](root, split, transforms=transforms, **kwargs)``; e.g.
    ``build_dataset("synthetic", None, "val", size=(64, 128), length=16, seed=1)``."""
    return _dataset_class(name)(root, split, transforms=transforms, **kwargs)


def dataset_splits(name: str, root) -> tuple[list[str], list[str]]:
    """``(found, missing)``: the splits of dataset ``name`` that are on disk under ``root`` (by each
    split's own folder) and those that are not. A generated dataset has every split."""
    cls = _dataset_class(name)
    if not issubclass(cls, FileSegmentationDataset):
        return list(cls.splits), []
    if root is None or not Path(root).expanduser().is_dir():
        return [], list(cls.splits)
    found = [s for s in cls.splits if cls.split_marker(Path(root).expanduser(), s).exists()]
    return found, [s for s in cls.splits if s not in found]


def check_dataset(name: str, root, split: str | None = None, **kwargs) -> list[str]:
    """Every problem of dataset ``name`` under ``root`` (all splits present, or just ``split``),
    as readable lines; an empty list means the dataset is fine. Never raises for a bad dataset."""
    cls = _dataset_class(name)
    if not issubclass(cls, FileSegmentationDataset):
        splits = [split] if split else list(cls.splits)
        problems = []
        for s in splits:
            try:
                problems += cls(root, s, **kwargs).check()
            except (ValueError, OSError) as err:
                problems.append(str(err))
        return problems
    if root is None or not Path(root).expanduser().is_dir():
        return [f"{name} root {root} does not exist or is not a folder; expected layout: {cls.layout}"]
    root = Path(root).expanduser()
    if split is None:
        splits = dataset_splits(name, root)[0]
        if not splits:
            return [f"{name} root {root} has none of the splits {', '.join(cls.splits)}; expected layout: {cls.layout}"]
    else:
        splits = [split]
    problems = []
    for s in splits:
        try:
            dataset = cls(root, s, strict=False, **kwargs)
        except (DatasetError, ValueError, OSError) as err:
            problems.append(str(err))
            continue
        if len(dataset) == 0 and not dataset.problems:
            problems.append(f"{name} split {s!r} under {dataset.root} has no samples; expected layout: {cls.layout}")
        problems += dataset.check()
    return list(dict.fromkeys(problems))  # a problem shared by every split (classes.txt) once


__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ADE20KDataset",
    "CamVidDataset",
    "CityscapesDataset",
    "DatasetError",
    "EvalTransform",
    "FileSegmentationDataset",
    "FolderDataset",
    "PascalContextDataset",
    "SegmentationDataset",
    "SyntheticStreetScenes",
    "TrainTransform",
    "build_dataset",
    "check_dataset",
    "dataset_splits",
    "colorize",
    "denormalize",
    "export_synthetic",
    "prepare_cityscapes",
    "to_cityscapes_label_ids",
]
