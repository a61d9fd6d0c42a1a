"""Evaluation pictures: the files exist and show what they claim (checked on the data they draw)."""

import numpy as np
import pytest
from PIL import Image

from contextseg.engine.pictures.plots import add_legend, plot_class_iou, plot_confusion

pytest.importorskip("matplotlib")


def test_class_iou_bars_are_the_scores_best_on_top_and_nan_left_out(tmp_path):
    from contextseg.engine.pictures.plots import class_iou_figure

    results = {"mIoU": 0.5, "IoU": [0.9, float("nan"), 0.1], "confusion": [[90, 0, 10], [0, 0, 0], [30, 0, 10]]}
    fig = class_iou_figure(results, ["sky", "pole", "car"])
    ax = fig.axes[0]
    bars = [(t.get_text(), p.get_width()) for t, p in zip(ax.get_yticklabels(), ax.patches)]
    assert bars == [("car", pytest.approx(10.0)), ("sky", pytest.approx(90.0))]  # barh: bottom to top, best on top
    assert ax.lines[0].get_xdata()[0] == pytest.approx(50.0)  # the mIoU line
    image = np.asarray(Image.open(plot_class_iou(results, ["sky", "pole", "car"], tmp_path / "iou.png")))
    assert image.ndim == 3 and image.shape[0] > 50


def test_confusion_matrix_rows_are_normalised_and_an_empty_row_stays_zero(tmp_path):
    from contextseg.engine.pictures.plots import confusion_figure

    fig = confusion_figure([[90, 0, 10], [0, 0, 0], [30, 0, 10]], ["sky", "pole", "car"])
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert np.allclose(shown, [[0.9, 0, 0.1], [0, 0, 0], [0.75, 0, 0.25]])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["sky", "pole", "car"]
    image = np.asarray(Image.open(plot_confusion([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm.png")))
    assert image.ndim == 3 and image.shape[0] > 50


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
