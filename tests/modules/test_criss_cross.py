"""Criss-cross attention against the paper's Eqs. (1)-(2) written as a loop over pixels (float64)."""

import math

import pytest
import torch

from contextseg.modules import CrissCrossAttention


def naive_criss_cross(block, x):
    """Eq. (1)-(2) per pixel u: the H + W - 1 pixels of u's column and row (u once), softmax of
    Q_u . K_i over them, H'_u = gamma sum_i A_i V_i + H_u; also each pixel's weights as an image."""
    q, k, v = block.query_conv(x)[0], block.key_conv(x)[0], block.value_conv(x)[0]
    _, height, width = v.shape
    out = torch.empty_like(x[0])
    weights = torch.zeros(height, width, height, width, dtype=x.dtype)
    for h in range(height):
        for w in range(width):
            cross = [(i, w) for i in range(height) if i != h] + [(h, j) for j in range(width)]
            energy = torch.stack([(q[:, h, w] * k[:, i, j]).sum() for i, j in cross])
            attention = torch.exp(energy - energy.max())
            attention = attention / attention.sum()
            out[:, h, w] = block.gamma * sum(a * v[:, i, j] for a, (i, j) in zip(attention, cross)) + x[0, :, h, w]
            for a, (i, j) in zip(attention, cross):
                weights[h, w, i, j] = a
    return out[None], weights


@pytest.fixture
def block():
    torch.manual_seed(0)
    block = CrissCrossAttention(16, reduction=8).double()
    with torch.no_grad():
        block.gamma.fill_(0.7)  # 0 at initialisation would hide the attention
    return block


def test_criss_cross_attention_equals_the_equations_per_pixel(block):
    x = torch.randn(1, 16, 5, 7, dtype=torch.double)
    expected, weights = naive_criss_cross(block, x)
    assert torch.allclose(block(x), expected, rtol=1e-10, atol=1e-12)
    attention = block.attention(x)[0]
    assert attention.shape == (5, 7, 12)
    for h, w in ((0, 0), (2, 3), (4, 6)):
        assert torch.allclose(block.cross_map(attention, (h, w)), weights[h, w], atol=1e-12)
        assert math.isclose(float(block.cross_map(attention, (h, w)).detach().sum()), 1.0, rel_tol=1e-12)


def test_two_passes_reach_every_pixel_as_the_composed_weights(block):
    # reach_map = sum_i A2[u, i] A1[i, :], the two passes' weights composed (a matrix product of
    # the per-pixel weight images), and it covers the whole image (Sec. 3.3)
    x = torch.randn(1, 16, 4, 6, dtype=torch.double)
    first = block.attention(x)[0]
    second = block.attention(block(x))[0]
    _, w1 = naive_criss_cross(block, x)
    _, w2 = naive_criss_cross(block, block(x))
    composed = torch.einsum("hwij,ijab->hwab", w2, w1)
    for pixel in ((0, 0), (1, 4), (3, 5)):
        reach = block.reach_map(first, second, pixel)
        assert torch.allclose(reach, composed[pixel], atol=1e-12)
        assert bool((reach > 0).all()) and math.isclose(float(reach.detach().sum()), 1.0, rel_tol=1e-12)


def test_gamma_zero_is_the_identity_and_gradients_reach_every_weight():
    torch.manual_seed(0)
    block = CrissCrossAttention(8, reduction=4).double()
    block.init_weights()
    x = torch.randn(2, 8, 3, 4, dtype=torch.double, requires_grad=True)
    assert torch.equal(block(x), x) and float(block.gamma.detach()) == 0.0
    with torch.no_grad():
        block.gamma.fill_(0.5)
    assert torch.autograd.gradcheck(lambda t: block(t), (x,))
    block(x).pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_bf16_autocast_keeps_the_softmax_in_fp32():
    torch.manual_seed(0)
    block = CrissCrossAttention(16).eval()
    x = torch.randn(1, 16, 6, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention = block.attention(x)
        out = block(x)
    assert attention.dtype == torch.float32 and torch.allclose(attention.sum(-1), torch.ones(1, 6, 9))
    assert torch.allclose(out.float(), block(x), atol=0.05)


def test_fewer_channels_than_the_reduction_is_refused():
    with pytest.raises(ValueError, match="in_channels >= reduction"):
        CrissCrossAttention(4, reduction=8)
