"""DANet's two attentions against Eqs. (1)-(4) written plainly with loops (float64)."""

import pytest
import torch

from contextseg.modules import ChannelAttention, PositionAttention


@pytest.fixture
def x():
    return torch.randn(2, 8, 3, 5, dtype=torch.double, generator=torch.Generator().manual_seed(1))


def test_position_attention_equals_eq_1_and_2(x):
    torch.manual_seed(0)
    pam = PositionAttention(8, key_channels=4).double()
    with torch.no_grad():
        pam.gamma.fill_(0.6)  # alpha: 0 at initialisation would hide the attention
    b_, c_, d_ = pam.query_project(x), pam.key_project(x), pam.value_project(x)
    expected = torch.empty_like(x)
    rows = torch.empty(2, 15, 15, dtype=torch.double)
    for n in range(2):
        positions = [(h, w) for h in range(3) for w in range(5)]
        for j, (hj, wj) in enumerate(positions):
            energy = torch.stack([(b_[n, :, hj, wj] * c_[n, :, hi, wi]).sum() for hi, wi in positions])
            s = torch.exp(energy - energy.max())
            s = s / s.sum()  # Eq. (1): s_ji over i
            rows[n, j] = s
            expected[n, :, hj, wj] = 0.6 * sum(s[i] * d_[n, :, hi, wi] for i, (hi, wi) in enumerate(positions)) + x[n, :, hj, wj]  # Eq. (2)
    assert torch.allclose(pam(x), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(pam.attention(x), rows, atol=1e-12)
    assert torch.allclose(pam.attention(x, torch.tensor([7, 0])), rows[:, [7, 0]], atol=1e-12)


def test_channel_attention_is_the_release_form_of_eq_3_and_4(x):
    cam = ChannelAttention().double()
    with torch.no_grad():
        cam.gamma.fill_(0.4)
    flat = x.flatten(2)
    expected = torch.empty_like(x)
    matrices = torch.empty(2, 8, 8, dtype=torch.double)
    for n in range(2):
        for j in range(8):
            similarity = torch.stack([(flat[n, j] * flat[n, i]).sum() for i in range(8)])
            weights = torch.exp(-similarity - (-similarity).max())  # the release: softmax(max - e) = softmax(-e)
            weights = weights / weights.sum()
            matrices[n, j] = weights
            expected[n, j] = 0.4 * sum(weights[i] * x[n, i] for i in range(8)) + x[n, j]  # Eq. (4)
    assert torch.allclose(cam(x), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(cam.attention(x), matrices, atol=1e-12)
    # the form mmseg and the authors' code compute, literally
    energy = flat @ flat.transpose(1, 2)
    assert torch.allclose(cam.attention(x), torch.softmax(energy.max(-1, keepdim=True)[0] - energy, -1), atol=1e-12)


def test_zero_gates_are_the_identity_and_gradients_reach_every_weight(x):
    torch.manual_seed(0)
    pam, cam = PositionAttention(8, 4).double(), ChannelAttention().double()
    pam.init_weights()
    assert torch.equal(pam(x), x) and torch.equal(cam(x), x)
    with torch.no_grad():
        pam.gamma.fill_(0.5), cam.gamma.fill_(0.5)
    x = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cam(pam(t)), (x,))
    cam(pam(x)).pow(2).sum().backward()
    for name, p in [*pam.named_parameters(), *cam.named_parameters()]:
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_bf16_autocast_keeps_the_attention_in_fp32():
    torch.manual_seed(0)
    pam, cam = PositionAttention(16, 4).eval(), ChannelAttention().eval()
    with torch.no_grad():
        pam.gamma.fill_(1.0), cam.gamma.fill_(1.0)
    x = torch.randn(1, 16, 6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pam.attention(x).dtype == torch.float32 and cam.attention(x).dtype == torch.float32
        out = cam(pam(x))
    assert torch.allclose(out.float(), cam(pam(x)), rtol=0.05, atol=0.05)
