"""Segmentation metrics from a confusion matrix (mmsegmentation's conventions)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["SegmentationMetric"]


class SegmentationMetric:
    """Accumulates a K x K confusion matrix over valid pixels and derives IoU/Acc.

    ``confusion[t, p]`` counts pixels of ground-truth class ``t`` predicted as ``p``. Per class:
    ``IoU_c = TP / (TP + FP + FN)`` and ``Acc_c = TP / (TP + FN)``; ``aAcc = sum TP / sum valid``.
    A class absent from both prediction and ground truth has IoU NaN, a class absent from the
    ground truth has Acc NaN, and NaNs are left out of mIoU/mAcc (mmsegmentation's convention).

    Args:
        num_classes: K.
        ignore_index: ground-truth value that is skipped (255).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` int tensors of the same shape, e.g. ``(B, H, W)``."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
        k = self.num_classes
        valid = target != self.ignore_index
        t, p = target[valid].long(), pred[valid].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ValueError(f"target holds values outside 0..{k - 1} that are not the ignore index {self.ignore_index}")
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
            raise ValueError(f"pred holds values outside 0..{k - 1}")
        counts = torch.bincount(t * k + p, minlength=k * k).view(k, k)
        if self.confusion.device != counts.device:
            self.confusion = self.confusion.to(counts.device)
        self.confusion += counts

    def reduce(self) -> None:
        """Sum the confusion matrix over all ranks of the default process group (no-op otherwise)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = self.confusion.device
            if dist.get_backend() == "nccl" and device.type != "cuda":
                device = torch.device("cuda", torch.cuda.current_device())
            buf = self.confusion.to(device)
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            self.confusion = buf.to(self.confusion.device)

    def compute(self) -> dict:
        """``{"mIoU", "mAcc", "aAcc", "IoU": [K], "Acc": [K]}`` as fractions in [0, 1] (NaN per above),
        and ``"confusion"``, the K x K pixel counts (rows: ground truth, columns: prediction)."""
        cm = self.confusion.double().cpu()
        tp = cm.diag()
        gt = cm.sum(1)
        pred = cm.sum(0)
        union = gt + pred - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, float("nan")))
        total = gt.sum()
        return {
            "mIoU": _nanmean(iou),
            "mAcc": _nanmean(acc),
            "aAcc": float(tp.sum() / total) if total > 0 else float("nan"),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "confusion": self.confusion.cpu().tolist(),  # [ground truth][prediction] pixel counts
        }


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")
