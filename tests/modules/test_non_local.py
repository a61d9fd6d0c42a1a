"""The embedded Gaussian non-local block against Eqs. (1), (3) and (6) written plainly (float64)."""

import math

import pytest
import torch

from contextseg.modules import NonLocal2d


def conv1x1(conv, v):
    """A 1x1 convolution of one position's features ``v (C_in,)``, written out."""
    out = conv.weight[:, :, 0, 0] @ v
    return out + conv.bias if conv.bias is not None else out


def naive_non_local(block, x, s):
    """Per position i of each sample: f(x_i, x_j) = exp(theta(x_i) . phi(x_j) / s), C(x) = sum_j f,
    y_i = sum_j f g(x_j) / C(x) (Eq. 1, 3); z_i = BN(W_z y_i) + x_i (Eq. 6), BN with its running
    statistics. Also the N x N weights f / C(x)."""
    batch, _, height, width = x.shape
    positions = [(h, w) for h in range(height) for w in range(width)]
    conv, bn = block.conv_out[0], block.conv_out[1]
    out = torch.empty_like(x)
    weights = torch.empty(batch, len(positions), len(positions), dtype=x.dtype)
    for n in range(batch):
        theta = [conv1x1(block.theta, x[n, :, h, w]) for h, w in positions]
        phi = [conv1x1(block.phi, x[n, :, h, w]) for h, w in positions]
        g = [conv1x1(block.g, x[n, :, h, w]) for h, w in positions]
        for i, (h, w) in enumerate(positions):
            f = torch.stack([torch.exp((theta[i] * phi[j]).sum() / s) for j in range(len(positions))])
            weights[n, i] = f / f.sum()
            y = sum(f[j] * g[j] for j in range(len(positions))) / f.sum()
            wy = conv1x1(conv, y)
            out[n, :, h, w] = (wy - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias + x[n, :, h, w]
    return out, weights


def dense_non_local(block, x, s):
    """The same with one explicit N x N matrix: softmax_j(Theta Phi^T / s) G."""
    b, c, h, w = x.shape
    theta, phi, g = (p(x).flatten(2).transpose(1, 2) for p in (block.theta, block.phi, block.g))
    weights = torch.softmax(theta @ phi.transpose(1, 2) / s, dim=-1)  # (B, N, N)
    y = (weights @ g).transpose(1, 2).reshape(b, -1, h, w)
    return block.conv_out(y) + x, weights


def random_block(use_scale=True, channels=8, reduction=2):
    torch.manual_seed(0)
    block = NonLocal2d(channels, reduction=reduction, use_scale=use_scale).double().eval()
    with torch.no_grad():  # every weight away from its initialisation: W_z's zero BN would hide the attention
        for p in block.parameters():
            p.normal_(0.0, 0.5)
        block.conv_out[1].running_mean.normal_()
        block.conv_out[1].running_var.uniform_(0.5, 2.0)
    return block


@pytest.fixture
def x():
    return torch.randn(2, 8, 3, 4, dtype=torch.double, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("use_scale", [True, False])
def test_non_local_equals_eq_1_3_and_6_per_position(x, use_scale):
    block = random_block(use_scale)
    s = math.sqrt(block.inter_channels) if use_scale else 1.0  # mmcv's use_scale divides by sqrt(C'); the paper by 1
    expected, weights = naive_non_local(block, x, s)
    assert block.inter_channels == 4
    assert torch.allclose(block(x), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(block.attention(x), weights, atol=1e-12)
    assert torch.allclose(block.attention(x, torch.tensor([7, 0])), weights[:, [7, 0]], atol=1e-12)
    dense, dense_weights = dense_non_local(block, x, s)
    assert torch.allclose(block(x), dense, rtol=1e-10, atol=1e-12) and torch.allclose(block.attention(x), dense_weights, atol=1e-12)


def test_the_scale_is_used_and_can_be_turned_off(x):
    scaled, plain = random_block(True), random_block(False)
    assert scaled.scale == 0.5 and plain.scale == 1.0  # 1 / sqrt(C'), C' = 8 // 2
    assert not torch.allclose(scaled(x), plain(x))  # same weights (same seed), another softmax
    assert not torch.allclose(scaled.attention(x), plain.attention(x))


def test_init_is_mmcv_s_and_the_block_starts_as_the_identity(x):
    torch.manual_seed(0)
    block = NonLocal2d(256).double()  # C' = 128
    for conv in (block.g, block.theta, block.phi):  # N(0, 0.01), bias 0
        assert abs(float(conv.weight.detach().std()) - 0.01) < 0.0005 and not bool(conv.bias.any())
    assert abs(float(block.conv_out[0].weight.detach().std()) - (2 / 256) ** 0.5) < 0.005  # kaiming normal, fan_out = 256 x 1 x 1
    assert block.conv_out[0].bias is None
    assert not bool(block.conv_out[1].weight.any()) and not bool(block.conv_out[1].bias.any())  # zeros_init on the norm
    x = torch.randn(2, 256, 3, 4, dtype=torch.double)
    assert torch.equal(block.train()(x), x) and torch.equal(block.eval()(x), x)
    block.init_weights()  # re-initialising gives the identity again
    assert torch.equal(NonLocal2d(8).double()(torch.ones(1, 8, 2, 2, dtype=torch.double)), torch.ones(1, 8, 2, 2, dtype=torch.double))


def test_gradients_are_exact_and_reach_every_weight():
    block = random_block(channels=4).train()  # batch statistics in W_z's norm
    x = torch.randn(2, 4, 2, 3, dtype=torch.double, requires_grad=True, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda t: block(t), (x,))
    block(x).pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_bf16_autocast_keeps_the_attention_in_fp32():
    torch.manual_seed(0)
    block = NonLocal2d(16).eval()
    with torch.no_grad():
        block.conv_out[1].weight.fill_(1.0)
    x = torch.randn(1, 16, 6, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention = block.attention(x)
        out = block(x)
    assert attention.dtype == torch.float32 and torch.allclose(attention.sum(-1), torch.ones(1, 54))
    assert out.dtype == torch.float32 and torch.allclose(out, block(x), atol=0.05)


def test_inter_channels_are_at_least_one():
    assert NonLocal2d(3, reduction=4).inter_channels == 1  # mmcv: max(C // reduction, 1)
