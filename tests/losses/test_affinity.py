"""AffinityLoss against the paper's formulas written plainly (float64, explicit N x N maps)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from contextseg.losses import AffinityLoss
from contextseg.losses.affinity import affinity_targets


def guard(den):
    return torch.where(den > 0, den, torch.ones_like(den))


def reference(logits, labels, size, num_classes, ignore=255, mode="extra_class"):
    """The released AffinityLoss / PriorLoss, with A = [l_i == l_j] built explicitly."""
    x = logits.double()
    n = x.shape[1]
    small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long().flatten(1)
    p = torch.sigmoid(x)
    eye = torch.eye(n, dtype=torch.double)
    if mode == "extra_class":
        small = torch.where(small == ignore, torch.full_like(small, num_classes), small)
        a = (small[:, :, None] == small[:, None, :]).double()
        valid = torch.ones_like(small, dtype=torch.double)
    else:
        valid = (small != ignore).double()
        a = (small[:, :, None] == small[:, None, :]).double() * valid[:, :, None] * valid[:, None, :]
    pair = valid[:, :, None] * valid[:, None, :]
    # BCE(P, A) = -[A log P + (1 - A) log(1 - P)], logs clamped at -100 as torch's BCE does; written
    # with log-sigmoid so that its float64 gradient stays exact on saturated logits (torch's BCE
    # backward divides by max(P (1 - P), 1e-12), which is wrong there)
    bce = -(a * F.logsigmoid(x).clamp_min(-100) + (1 - a) * F.logsigmoid(-x).clamp_min(-100))
    unary = (bce * pair).sum() / pair.sum()
    a_off = (1 - eye) * a
    recall = (p * a_off).sum(2) / guard(a_off.sum(2))
    spec = ((1 - p) * (1 - a) * pair).sum(2) / guard(((1 - a) * pair).sum(2))
    prec = (p * a_off).sum(2) / guard((p * valid[:, None, :]).sum(2))
    def term(t):  # BCE(t, 1) = -max(log t, -100), with the exact derivative -1/t (0 where clamped)
        return (-torch.log(t.clamp_min(math.exp(-100))) * valid).sum() / valid.sum()

    return unary + term(recall) + term(spec) + term(prec)


def sample(b=2, size=(3, 4), label_size=(7, 9), k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = size[0] * size[1]
    logits = (2 * torch.randn(b, n, n, generator=g, dtype=torch.double)).requires_grad_()
    labels = torch.randint(0, k, (b, *label_size), generator=g)
    labels[0, :3] = 255
    labels[-1, label_size[0] // 2, :] = 255
    return logits, labels


@pytest.mark.parametrize("mode", ["extra_class", "mask"])
def test_value_and_gradient_match_the_explicit_formula(mode):
    logits, labels = sample()
    got = AffinityLoss(3, ignore_mode=mode)(logits, labels, (3, 4))
    ref = reference(logits, labels, (3, 4), 3, mode=mode)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    g_got, = torch.autograd.grad(got, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    assert torch.allclose(g_got, g_ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("mode", ["extra_class", "mask"])
def test_gradcheck(mode):
    logits, labels = sample(b=1, size=(2, 3), label_size=(4, 6), seed=1)
    loss = AffinityLoss(3, ignore_mode=mode, unary_weight=0.7, global_weight=1.3)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels, (2, 3)), (logits,))


def test_weights_scale_the_two_parts():
    logits, labels = sample()
    unary = AffinityLoss(3, global_weight=0.0)(logits, labels, (3, 4))
    glob = AffinityLoss(3, unary_weight=0.0)(logits, labels, (3, 4))
    both = AffinityLoss(3, unary_weight=2.0, global_weight=0.5)(logits, labels, (3, 4))
    assert both.item() == pytest.approx(2 * unary.item() + 0.5 * glob.item(), rel=1e-9)


def test_float32_under_bf16_autocast_agrees():
    logits, labels = sample()
    ref = reference(logits, labels, (3, 4), 3).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = AffinityLoss(3)(logits.detach().float(), labels, (3, 4))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("mode", ["extra_class", "mask"])
@pytest.mark.parametrize("scene", ["singleton_class", "all_but_one_ignored"])
def test_float32_gradient_of_saturated_rows_matches_float64(mode, scene):
    # Every row's prior on the one pixel of another class is ~1 (logits 15-30), so each row's
    # specificity sum_j (1-P_ij)(1-A_ij) / sum_j (1-A_ij) is 1e-7..1e-13 and its -log term has a huge
    # derivative; a backward that adds and then subtracts that term on same-class entries loses
    # their digits in float32 (2.4% of the largest gradient in the official parity run; before the fix, 2.2% here).
    g = torch.Generator().manual_seed(3)
    b, size, k = 2, (6, 6), 2
    n = size[0] * size[1]
    logits = 3 * torch.randn(b, n, n, generator=g, dtype=torch.double)
    labels = torch.zeros(b, *size, dtype=torch.long)
    if scene == "singleton_class":  # all labels 0 but one pixel of class 1
        labels[:, 2, 3] = 1
        other = 2 * size[1] + 3
    else:  # everything ignored but one pixel (mask mode: two, so that a pair is supervised)
        labels[:] = 255
        labels[:, 4, 1] = 0
        other = 4 * size[1] + 1
        if mode == "mask":
            labels[:, 0, 0] = 1
    logits[:, :, other] = 15 + 15 * torch.rand(b, n, generator=g, dtype=torch.double)
    x64 = logits.clone().requires_grad_()
    ref = reference(x64, labels, size, k, mode=mode)
    g64, = torch.autograd.grad(ref, x64)
    x32 = logits.float().requires_grad_()
    got = AffinityLoss(k, ignore_mode=mode)(x32, labels, size)
    g32, = torch.autograd.grad(got, x32)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    err = (g32.double() - g64).abs()
    scale = g64.abs().max()
    assert err.max() <= 1e-6 * scale, (err.max() / scale).item()
    large = g64.abs() > 1e-3 * scale
    assert torch.all(err[large] <= 1e-5 * g64.abs()[large]), (err[large] / g64.abs()[large]).max().item()


def test_ignore_modes_differ_only_through_ignored_pixels():
    logits, labels = sample()
    clean = labels.clone()
    clean[clean == 255] = 0
    a = AffinityLoss(3, ignore_mode="extra_class")(logits, clean, (3, 4))
    b = AffinityLoss(3, ignore_mode="mask")(logits, clean, (3, 4))
    assert a.item() == pytest.approx(b.item(), rel=1e-9)  # no ignore: identical
    # mask mode: pairs touching an ignored pixel get no gradient at all
    loss = AffinityLoss(3, ignore_mode="mask")(logits, labels, (3, 4))
    grad, = torch.autograd.grad(loss, logits)
    _, valid = affinity_targets(labels, (3, 4), 3, ignore_mode="mask")
    touching = (valid[:, :, None] * valid[:, None, :]) == 0
    assert touching.any() and torch.all(grad[touching] == 0)
    # extra_class mode supervises them (ignore is one more class)
    loss = AffinityLoss(3, ignore_mode="extra_class")(logits, labels, (3, 4))
    grad, = torch.autograd.grad(loss, logits)
    assert grad[touching].abs().sum() > 0


def test_labels_are_downsampled_by_nearest_neighbour():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    onehot, valid = affinity_targets(labels, (2, 2), 3)
    assert onehot.argmax(-1).tolist() == [[0, 1, 2, 3]]  # ignore -> extra class 3
    onehot, valid = affinity_targets(labels, (2, 2), 3, ignore_mode="mask")
    assert valid.tolist() == [[1, 1, 1, 0]] and onehot[0, 3].sum() == 0
    # no interpolation can invent a class between 0 and 2
    big = torch.zeros(1, 8, 8, dtype=torch.long)
    big[:, :, 4:] = 2
    assert set(affinity_targets(big, (3, 3), 3)[0].argmax(-1).flatten().tolist()) <= {0, 2}


def test_singleton_rows_add_the_documented_constant_with_no_gradient():
    # 2x2 grid, every cell its own class: recall and precision rows are empty -> 100 each, no gradient
    labels = torch.tensor([[[0, 1], [2, 3]]])
    target = torch.eye(4, dtype=torch.double)[None]
    logits = (torch.logit(target.clamp(1e-6, 1 - 1e-6))).requires_grad_()
    glob = AffinityLoss(4, unary_weight=0.0)(logits, labels, (2, 2))
    assert glob.item() == pytest.approx(200.0, rel=1e-3)  # recall 100 + precision 100 (+ spec ~0)
    loss = AffinityLoss(4, unary_weight=0.0)(logits, labels, (2, 2))
    grad, = torch.autograd.grad(loss, logits)
    assert grad.abs().max() < 1e-3


def test_bad_inputs_raise():
    loss = AffinityLoss(3)
    with pytest.raises(ValueError, match=r"N = 3\*4 = 12"):
        loss(torch.zeros(1, 10, 10), torch.zeros(1, 6, 8, dtype=torch.long), (3, 4))
    with pytest.raises(ValueError, match="neither a class"):
        loss(torch.zeros(1, 12, 12), torch.full((1, 6, 8), 7), (3, 4))
    with pytest.raises(ValueError, match="ignore_mode"):
        AffinityLoss(3, ignore_mode="drop")


class AllocationSizes(TorchDispatchMode):
    """Records the element count and storage of every tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.sizes.append((t.numel(), t.untyped_storage().data_ptr(), str(func)))
        return out


def test_never_builds_an_n_by_n_tensor_besides_the_gradient():
    b, size = 2, (32, 32)
    n = size[0] * size[1]  # N = 1024: N x N per image = 1M elements, chunks are smaller
    logits = torch.randn(b, n, n, requires_grad=True)
    labels = torch.randint(0, 5, (b, 64, 64))
    with AllocationSizes() as rec:
        AffinityLoss(5)(logits, labels, size).backward()
    # chunk temporaries stay below a quarter of the logits; only the logits' gradient is as large
    big = {ptr: (s, f) for s, ptr, f in rec.sizes if s >= b * n * n // 4 and ptr != logits.untyped_storage().data_ptr()}
    assert len(big) == 1 and logits.grad.untyped_storage().data_ptr() in big, big
