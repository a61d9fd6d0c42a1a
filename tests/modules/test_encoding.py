import pytest
import torch

from contextseg.modules import EncModule, Encoding


def naive_encoding(x, codewords, scale):
    """Eq. (2) with the expanded (B, N, K, C) residual tensor."""
    feats = x.flatten(2).transpose(1, 2)  # (B, N, C)
    residual = feats[:, :, None, :] - codewords[None, None]  # (B, N, K, C)
    sl = scale * (residual**2).sum(-1)  # (B, N, K)
    a = torch.softmax(sl, dim=2)
    return (a[..., None] * residual).sum(1)  # (B, K, C)


def test_matmul_form_matches_the_expanded_formula():
    torch.manual_seed(0)
    enc = Encoding(6, 4).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.double)
    assert torch.allclose(enc(x), naive_encoding(x, enc.codewords, enc.scale), rtol=1e-6, atol=1e-12)


def test_initialisation_ranges():
    enc = Encoding(512, 32)
    bound = 1 / (32 * 512) ** 0.5
    assert enc.codewords.abs().max() <= bound and enc.codewords.abs().max() > 0.9 * bound
    assert (enc.scale <= 0).all() and (enc.scale >= -1).all()


def test_gradcheck():
    torch.manual_seed(0)
    enc = Encoding(3, 2).double()
    x = torch.randn(1, 3, 2, 3, dtype=torch.double, requires_grad=True)
    # codewords and smoothing factors are the layer's own parameters: gradcheck perturbs them in place
    assert torch.autograd.gradcheck(lambda inp, codewords, scale: enc(inp), (x, enc.codewords, enc.scale))


def test_enc_module_gates_channels():
    torch.manual_seed(0)
    mod = EncModule(8, num_codes=4).double().eval()
    x = torch.randn(2, 8, 5, 5, dtype=torch.double)
    encoded, gated = mod(x)
    assert encoded.shape == (2, 8) and gated.shape == x.shape
    expect_en = mod.encoding(x).mean(1)
    gamma = torch.sigmoid(mod.fc[0](expect_en))
    assert torch.allclose(encoded, expect_en)
    assert torch.allclose(gated, torch.relu(x + x * gamma[:, :, None, None]))
