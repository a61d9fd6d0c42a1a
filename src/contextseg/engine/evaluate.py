"""Evaluation over a dataset: per-image inference, confusion matrix, per-class table."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Sequence

import torch
from torch.utils.data import Subset
from tqdm import tqdm

from ..data.text import printable
from ..metrics import SegmentationMetric
from .config import EvalConfig
from .distributed import get_rank, get_world_size, is_main_process
from .loaders import guarded, make_loader
from ..models.inference import inference

__all__ = ["evaluate", "format_results"]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset,
    cfg: EvalConfig,
    device: torch.device,
    crop_size: Sequence[int] | None = None,
    num_workers: int = 0,
    autocast=None,
    progress: bool = True,
) -> dict:
    """mIoU/mAcc/aAcc and per-class IoU/Acc of ``model`` on ``dataset`` (an eval-transformed dataset).

    Each rank evaluates every ``world_size``-th image and the confusion matrices are summed.
    Images are processed one at a time at their own size; labels stay at the original resolution.
    """
    was_training = model.training
    model.eval()
    metric = SegmentationMetric(len(dataset.classes), dataset.ignore_index)
    shard = Subset(dataset, list(range(get_rank(), len(dataset), get_world_size())))
    loader = make_loader(shard, num_workers, batch_size=1, shuffle=False)  # at most one worker per CPU
    window = cfg.crop_size or crop_size
    ctx = autocast or nullcontext
    bar = tqdm(guarded(loader), desc="eval", leave=False, disable=not (progress and is_main_process()))  # worker failures: one line
    for batch in bar:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        positions = batch.get("positions")
        with ctx():
            probs = inference(
                model,
                images,
                mode=cfg.mode,
                crop_size=window,
                stride=cfg.stride,
                scales=cfg.scales,
                flip=cfg.flip,
                out_size=masks.shape[-2:],
                positions=positions.to(device) if positions is not None else None,
            )
        metric.update(probs.argmax(1), masks)
    metric.reduce()
    model.train(was_training)
    return metric.compute()


def format_results(results: dict, class_names: Sequence[str]) -> str:
    """A per-class table (IoU, Acc in %) followed by mIoU / mAcc / aAcc. Class names come from
    files (a class list, a checkpoint): their control characters are shown escaped."""
    class_names = [printable(n) for n in class_names]
    width = max(8, *(len(n) for n in class_names))

    def pct(v: float) -> str:
        return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"

    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}", "-" * (width + 16)]
    for name, iou, acc in zip(class_names, results["IoU"], results["Acc"]):
        lines.append(f"{name:<{width}}  {pct(iou)}  {pct(acc)}")
    lines.append("-" * (width + 16))
    lines.append(f"mIoU {pct(results['mIoU'])}   mAcc {pct(results['mAcc'])}   aAcc {pct(results['aAcc'])}")
    return "\n".join(lines)
