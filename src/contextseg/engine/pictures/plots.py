"""Evaluation pictures: per-class IoU bars and the normalised confusion matrix (matplotlib), and a
class legend drawn onto prediction overlays (PIL only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ...data.io import AUTHOR_MARK, atomic_write, check_output

__all__ = ["pyplot", "plot_class_iou", "plot_confusion", "class_iou_figure", "confusion_figure", "add_legend"]


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only), or a one-line ImportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("pictures need matplotlib: pip install 'contextseg[viz]'") from None
    return plt


def plot_class_iou(results: dict, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """`class_iou_figure` saved as a PNG at ``path``."""
    return _save(class_iou_figure(results, classes, title), path)


def class_iou_figure(results: dict, classes: Sequence[str], title: str = ""):
    """Horizontal bars of each class's IoU (%), best at the top, with the mIoU as a line; classes
    without a score (NaN: absent from the labels and the predictions) are left out."""
    plt = pyplot()
    iou = np.array([np.nan if v is None else v for v in results["IoU"]], dtype=float) * 100
    order = [k for k in np.argsort(np.nan_to_num(iou, nan=-1.0)) if not math.isnan(iou[k])]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(order) + 1.2))
    ax.barh([classes[k] for k in order], iou[order], color="tab:blue")
    ax.axvline(100 * results["mIoU"], color="tab:red", linestyle="--", label=f"mIoU {100 * results['mIoU']:.1f}")
    for y, k in enumerate(order):
        ax.text(iou[k] + 0.5, y, f"{iou[k]:.1f}", va="center", fontsize=7)
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "per-class IoU", fontsize=10)
    return fig


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """`confusion_figure` saved as a PNG at ``path``."""
    return _save(confusion_figure(confusion, classes, title), path)


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""):
    """The confusion matrix normalised per ground-truth row (each row sums to 1, a row without
    pixels stays 0): rows are the true classes, columns what the model predicted."""
    plt = pyplot()
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(0.42 * k + 2.5, 0.42 * k + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if norm[i, j] >= 0.01:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, fraction=0.046, pad=0.04)
    ax.set_title(title or "confusion matrix (rows normalised)", fontsize=10)
    return fig


def _save(fig, path: str | Path) -> Path:
    """``fig`` as a PNG marked as contextseg's at ``path``, which may be new or contextseg's own,
    never a file of someone else (`check_output`)."""
    path = Path(path)
    try:
        check_output(path, "the plot's path", overwrite=True)
        with atomic_write(path) as tmp:  # whole or not at all, never through a link
            fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png", metadata={AUTHOR_MARK: "a plot written by contextseg"})
    finally:
        pyplot().close(fig)
    return path


def add_legend(overlay: np.ndarray, labels: np.ndarray, classes: Sequence[str], palette: Sequence[Sequence[int]]) -> np.ndarray:
    """``overlay`` (H, W, 3) uint8 with a panel on its right listing each class present in
    ``labels``: its colour swatch and name, largest class first."""
    from PIL import Image, ImageDraw, ImageFont

    present, counts = np.unique(labels, return_counts=True)
    present = present[np.argsort(-counts)]
    font = ImageFont.load_default()
    row = 14
    names = [str(classes[k]) if k < len(classes) else str(k) for k in present]
    width = 24 + max(int(font.getlength(n)) for n in names) + 8
    height = max(overlay.shape[0], row * len(names) + 8)
    canvas = Image.new("RGB", (overlay.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(overlay), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = overlay.shape[1] + 6
    for i, (k, name) in enumerate(zip(present, names)):
        y = 4 + i * row
        draw.rectangle([x0, y, x0 + 12, y + 10], fill=tuple(int(c) for c in palette[k]), outline=(0, 0, 0))
        draw.text((x0 + 18, y - 1), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
