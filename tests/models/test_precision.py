"""Every registered model in bf16 autocast (``train.precision: auto`` on a CPU with native bf16)
against float32: the forward, the losses, and one training step, in the channels_last layout that
``auto`` uses on the CPU. What stays in fp32 under autocast, and why, is listed in
``contextseg/engine/precision.py``."""

import copy
import math

import pytest
import torch

import contextseg as cs


def build(name, size, num_classes=9):
    torch.manual_seed(0)
    options = cs.models.get_model_class(name).small_options(size)
    return cs.create_model(name, num_classes=num_classes, backbone="resnet18d", **options)


@pytest.mark.parametrize("name", cs.list_models())
def test_bf16_forward_and_losses_agree_with_fp32(name):
    """bf16 autocast gives the fp32 logits and losses to bf16's precision (8 bits of mantissa,
    relative error ~1e-2 after a ResNet-18), not merely finite numbers."""
    model = build(name, (64, 64)).eval()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 9, (2, 64, 64))
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x).float()
    assert torch.isfinite(out).all()
    assert (out - ref).norm() / ref.norm() < 0.05, float((out - ref).norm() / ref.norm())
    model.train()
    torch.manual_seed(1)
    ref_losses = model(x, y)
    torch.manual_seed(1)  # the same dropout masks
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(x, y)
    for key, value in losses.items():
        assert value.dtype == torch.float32, key  # every loss term is computed in fp32
        got, want = value.item(), ref_losses[key].item()
        assert math.isfinite(got) and abs(got - want) <= 0.05 * abs(want) + 1e-3, (key, got, want)


@pytest.mark.parametrize("name", cs.list_models())
def test_a_bf16_channels_last_training_step_agrees_with_fp32(name):
    """One SGD step from the same weights on the same batch (dropout off, batch 4 at 64 x 64, the
    channels_last layout ``auto`` picks on the CPU): the gradient points the same way (cosine >= 0.94
    over all parameters; measured 0.96-1.00 across the models) and the step lowers the fp32 loss by
    the same amount (within 10 % + 2e-4). A random-init gradient is a sum of nearly cancelling terms,
    so its elementwise error is much larger than bf16's 0.4 % rounding; direction and effect are
    what a training run feels."""
    model = build(name, (64, 64)).train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    torch.manual_seed(2)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 9, (4, 64, 64))
    results = {}
    for bf16 in (False, True):
        m = copy.deepcopy(model).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(m.parameters(), lr=0.05)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = m(x.contiguous(memory_format=torch.channels_last), y)["loss"]
        loss.backward()
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads), name
        optimizer.step()
        with torch.no_grad():
            after = m(x, y)["loss"].item()  # both judged by the same fp32 loss
        results[bf16] = (loss.item(), torch.cat([g.flatten() for g in grads]), after)
    (loss32, grad32, after32), (loss16, grad16, after16) = results[False], results[True]
    cosine = torch.nn.functional.cosine_similarity(grad32.double(), grad16.double(), dim=0).item()
    assert cosine >= 0.94, (name, cosine)
    drop32, drop16 = loss32 - after32, loss16 - after16
    assert drop32 > 0 and abs(drop16 - drop32) <= 0.1 * drop32 + 2e-4, (name, drop32, drop16)
