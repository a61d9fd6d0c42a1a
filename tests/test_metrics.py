import math

import pytest
import torch

from contextseg.metrics import SegmentationMetric


def test_hand_computed_confusion_matrix_with_ignore_and_absent_classes():
    # 4 classes; class 3 never appears in GT or prediction; class 2 is predicted but absent from GT.
    target = torch.tensor([[0, 0, 1, 1, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 2, 3, 0]])  # the 3 under the ignore label must not count
    m = SegmentationMetric(4)
    m.update(pred, target)
    expected = torch.tensor([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(m.confusion, expected)
    r = m.compute()
    # IoU0 = 2 / (3 + 2 - 2) = 2/3; IoU1 = 1 / (2 + 2 - 1) = 1/3; IoU2 = 0 / (0 + 1 - 0) = 0; IoU3 NaN
    assert r["IoU"][0] == pytest.approx(2 / 3)
    assert r["IoU"][1] == pytest.approx(1 / 3)
    assert r["IoU"][2] == 0.0
    assert math.isnan(r["IoU"][3])
    # Acc0 = 2/3, Acc1 = 1/2, Acc2 NaN (absent from GT), Acc3 NaN
    assert r["Acc"][0] == pytest.approx(2 / 3) and r["Acc"][1] == pytest.approx(0.5)
    assert math.isnan(r["Acc"][2]) and math.isnan(r["Acc"][3])
    assert r["mIoU"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert r["mAcc"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert r["aAcc"] == pytest.approx(3 / 5)


def test_accumulates_over_batches_and_resets():
    m = SegmentationMetric(2)
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    m.update(torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))
    assert m.compute()["aAcc"] == pytest.approx(3 / 4)
    m.reset()
    assert m.confusion.sum() == 0 and math.isnan(m.compute()["mIoU"])


def test_rejects_out_of_range_values():
    m = SegmentationMetric(3)
    with pytest.raises(ValueError, match="target"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="same shape"):
        m.update(torch.tensor([0, 1]), torch.tensor([0]))


def test_reduce_is_a_noop_without_process_group():
    m = SegmentationMetric(2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    m.reduce()
    assert m.confusion.tolist() == [[1, 1], [0, 0]]
