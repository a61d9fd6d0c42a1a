"""Evaluation pictures: the files exist and show what they claim (checked on the data they draw)."""

import numpy as np
import pytest
from PIL import Image

from contextseg.engine.plots import add_legend, plot_class_iou, plot_confusion

pytest.importorskip("matplotlib")


def test_class_iou_and_confusion_pictures(tmp_path):
    results = {"mIoU": 0.5, "IoU": [0.9, float("nan"), 0.1], "confusion": [[90, 0, 10], [0, 0, 0], [30, 0, 10]]}
    a = plot_class_iou(results, ["sky", "pole", "car"], tmp_path / "iou.png")
    b = plot_confusion(results["confusion"], ["sky", "pole", "car"], tmp_path / "cm.png")
    for path in (a, b):
        image = np.asarray(Image.open(path))
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_legend_lists_each_present_class_with_its_colour():
    overlay = np.zeros((20, 30, 3), np.uint8)
    labels = np.zeros((20, 30), np.int64)
    labels[:5] = 2
    palette = [[10, 20, 30], [40, 50, 60], [200, 100, 0]]
    out = add_legend(overlay, labels, ["a", "b", "c"], palette)
    assert out.shape[0] >= 20 and out.shape[1] > 30 and np.array_equal(out[:20, :30], overlay)
    panel = out[:, 30:].reshape(-1, 3)
    has = [(panel == np.array(c, np.uint8)).all(1).any() for c in palette]
    assert has == [True, False, True]  # class b is absent, so no swatch
