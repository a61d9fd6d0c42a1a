"""Build datasets and models from a :class:`Config` (shared by train, eval, predict and export)."""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch

from ..data import build_dataset
from ..data.transforms import EvalTransform, TrainTransform
from ..models import Segmentor, create_model
from .config import Config, ConfigError

__all__ = ["train_transform", "build_train_dataset", "build_eval_dataset", "build_model", "autocast_context"]


def _dataset(cfg: Config, split: str, transforms):
    try:
        return build_dataset(cfg.data.name, cfg.data.root, split, transforms=transforms, **cfg.data.kwargs)
    except TypeError as exc:  # an unknown entry of data.kwargs
        raise ConfigError(f"data.kwargs {cfg.data.kwargs!r} do not fit dataset {cfg.data.name!r}: {exc}") from None


def _base_size(cfg: Config, dataset) -> tuple[int, int] | None:
    base = cfg.data.base_size or getattr(dataset, "base_size", None)
    return tuple(base) if base else None


def train_transform(cfg: Config, dataset, with_positions: bool = False) -> TrainTransform:
    """The joint training pipeline of data.md for ``dataset`` (its base size and ignore index)."""
    return TrainTransform(
        crop_size=tuple(cfg.data.crop_size),
        base_size=_base_size(cfg, dataset),
        ratio_range=tuple(cfg.data.ratio_range),
        cat_max_ratio=cfg.data.cat_max_ratio,
        flip_prob=cfg.data.flip_prob,
        photometric=cfg.data.photometric,
        ignore_index=dataset.ignore_index,
        with_positions=with_positions,
    )


def build_train_dataset(cfg: Config, with_positions: bool = False):
    dataset = _dataset(cfg, cfg.data.train_split, None)
    dataset.transforms = train_transform(cfg, dataset, with_positions)
    return dataset


def build_eval_dataset(cfg: Config, split: str | None = None, with_positions: bool = False):
    dataset = _dataset(cfg, split or cfg.data.val_split, None)
    dataset.transforms = EvalTransform(base_size=_base_size(cfg, dataset), with_positions=with_positions)
    return dataset


def build_model(cfg: Config, num_classes: int, ignore_index: int = 255) -> Segmentor:
    options = dict(cfg.model)
    name = options.pop("name")
    given = options.pop("num_classes", None)
    if given is not None and int(given) != num_classes:
        raise ConfigError(f"model.num_classes={given} but dataset {cfg.data.name!r} has {num_classes} classes")
    options.setdefault("ignore_index", ignore_index)
    return create_model(name, num_classes=num_classes, **options)


def autocast_context(device: torch.device, precision: str):
    """A zero-argument context factory for ``precision`` (fp32: no autocast)."""
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
