import math

import pytest
import torch

from contextseg.losses import CrossEntropyLoss


def reference_ce(logits, labels, ignore=255, weight=None, keep=None):
    """Plain float64 loop: sum_i w_{y_i} * -log softmax(x_i)[y_i] / sum_i w_{y_i} over kept pixels."""
    logits = logits.double()
    b, k, h, w = logits.shape
    num, den = 0.0, 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                t = int(labels[n, y, x])
                if t == ignore or (keep is not None and not keep[n, y, x]):
                    continue
                logp = logits[n, :, y, x] - torch.logsumexp(logits[n, :, y, x], 0)
                wt = 1.0 if weight is None else float(weight[t])
                num += -wt * float(logp[t])
                den += wt
    return num / den if den else 0.0


def test_matches_reference_with_ignore_and_weights():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[0, :2] = 255
    weight = [0.5, 1.0, 2.0, 1.5]
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(reference_ce(logits, labels), rel=1e-5)
    got = CrossEntropyLoss(class_weight=weight)(logits, labels).item()
    assert got == pytest.approx(reference_ce(logits, labels, weight=weight), rel=1e-5)


def test_ignored_pixels_get_zero_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (1, 4, 4))
    labels[0, 1:3, 1:3] = 255
    CrossEntropyLoss()(logits, labels).backward()
    grad = logits.grad[0].abs().sum(0)
    assert torch.all(grad[1:3, 1:3] == 0)
    assert torch.all(grad[labels[0] != 255] > 0)


def test_all_ignore_batch_is_finite_zero():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = CrossEntropyLoss(class_weight=[1.0, 2.0, 3.0])(logits, labels)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)
    loss = CrossEntropyLoss(ohem_thresh=0.7, ohem_min_kept=5)(logits, labels)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_ohem_keeps_hard_pixels_and_min_kept():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 6, 6, generator=g) * 3
    labels = torch.randint(0, 3, (1, 6, 6), generator=g)
    labels[0, 0, :3] = 255
    prob = logits.softmax(1).gather(1, labels.clamp(max=2)[:, None])[:, 0]
    valid = labels != 255
    # threshold rule: keep pixels with true-class probability < 0.7 (enough of them here)
    keep = valid & (prob < 0.7)
    assert keep.sum() >= 3
    got = CrossEntropyLoss(ohem_thresh=0.7, ohem_min_kept=3)(logits, labels).item()
    assert got == pytest.approx(reference_ce(logits, labels, keep=keep), rel=1e-5)
    # min_kept rule: fewer hard pixels than min_kept -> the min_kept lowest probabilities
    n = 20
    order = torch.where(valid, prob, torch.full_like(prob, 9.0)).flatten().argsort()[:n]
    keep = torch.zeros(36, dtype=torch.bool)
    keep[order] = True
    got = CrossEntropyLoss(ohem_thresh=0.01, ohem_min_kept=n)(logits, labels).item()
    assert got == pytest.approx(reference_ce(logits, labels, keep=keep.view(1, 6, 6)), rel=1e-5)


def test_bad_shapes_and_weights_raise():
    with pytest.raises(ValueError, match="labels"):
        CrossEntropyLoss()(torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="class_weight"):
        CrossEntropyLoss(class_weight=[1.0, 2.0])(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ohem_thresh"):
        CrossEntropyLoss(ohem_thresh=1.5)
