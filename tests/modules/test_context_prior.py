import pytest
import torch

from contextseg.modules import AggregationModule, ContextPriorLayer


def test_context_prior_layer_matches_eq6_written_plainly():
    torch.manual_seed(0)
    layer = ContextPriorLayer(8, prior_channels=6, prior_size=(3, 5), kernel_size=3).double().eval()
    x = torch.randn(2, 8, 3, 5, dtype=torch.double)
    out, prior_logits = layer(x)
    assert out.shape == (2, 8 + 12, 3, 5) and prior_logits.shape == (2, 15, 15)
    # reference: P_ij = sigmoid(prior conv channel j at pixel i); Y = P X~ / N; Y- = (1 - P) X~ / N
    value = layer.aggregation(x)
    conv = layer.prior_conv(value)  # (B, N, h, w)
    n = 15
    for b in range(2):
        for i in range(n):
            yi, xi = divmod(i, 5)
            for j in range(n):
                assert prior_logits[b, i, j] == conv[b, j, yi, xi]
    p = torch.sigmoid(prior_logits)
    v = value.flatten(2).transpose(1, 2)  # (B, N, C)
    intra = torch.stack([sum(p[:, i, j, None] * v[:, j] for j in range(n)) / n for i in range(n)], 1)
    inter = torch.stack([sum((1 - p[:, i, j, None]) * v[:, j] for j in range(n)) / n for i in range(n)], 1)
    expect_intra = layer.intra_conv(intra.transpose(1, 2).reshape(2, 6, 3, 5))
    expect_inter = layer.inter_conv(inter.transpose(1, 2).reshape(2, 6, 3, 5))
    assert torch.allclose(out[:, :8], x)
    assert torch.allclose(out[:, 8:14], expect_intra, rtol=1e-6, atol=1e-10)
    assert torch.allclose(out[:, 14:], expect_inter, rtol=1e-6, atol=1e-10)


def test_aggregation_module_is_two_separable_depthwise_branches():
    torch.manual_seed(0)
    am = AggregationModule(4, 6, kernel_size=5).double().eval()
    x = torch.randn(1, 4, 7, 9, dtype=torch.double)
    y = am(x)
    r = am.reduce_conv(x)
    expect = torch.relu(am.norm(am.branch_a[1](am.branch_a[0](r)) + am.branch_b[1](am.branch_b[0](r))))
    assert torch.allclose(y, expect)
    convs = [m for m in am.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert [m.kernel_size for m in convs] == [(5, 1), (1, 5), (1, 5), (5, 1)] and all(m.groups == 6 for m in convs)


def test_wrong_feature_size_is_a_clear_error():
    layer = ContextPriorLayer(8, prior_channels=4, prior_size=(3, 5))
    with pytest.raises(ValueError, match=r"4x5 feature map but its prior_size is 3x5"):
        layer(torch.randn(1, 8, 4, 5))


def test_prior_runs_in_float32_under_autocast():
    layer = ContextPriorLayer(8, prior_channels=4, prior_size=(2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, prior_logits = layer(torch.randn(2, 8, 2, 3))
    assert prior_logits.dtype == torch.float32 and torch.isfinite(out).all()
