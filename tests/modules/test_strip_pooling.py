import pytest
import torch
import torch.nn.functional as F

from contextseg.backbones import TimmBackbone
from contextseg.modules import MixedPooling, StripPooling, insert_strip_pooling


def test_spm_gate_from_row_and_column_means():
    torch.manual_seed(0)
    spm = StripPooling(3).double().eval()
    x = torch.randn(2, 3, 4, 5, dtype=torch.double)
    rows = torch.stack([x[:, :, i, :].mean(-1) for i in range(4)], -1)[..., None]  # (B, C, h, 1)
    cols = torch.stack([x[:, :, :, j].mean(-1) for j in range(5)], -1)[:, :, None]  # (B, C, 1, w)
    yh = spm.conv_h(rows)
    yw = spm.conv_w(cols)
    y = torch.zeros_like(x)
    for i in range(4):
        for j in range(5):
            y[:, :, i, j] = yh[:, :, i, 0] + yw[:, :, 0, j]
    gate = torch.sigmoid(spm.fuse(torch.relu(y)))
    assert torch.allclose(spm(x), x * gate, rtol=1e-6)


def test_mpm_shape_residual_and_pool_sizes():
    torch.manual_seed(0)
    mpm = MixedPooling(16, pool_sizes=(4, (2, 3))).eval()
    x = torch.randn(2, 16, 9, 11)
    y = mpm(x)
    assert y.shape == x.shape and (y >= 0).all()
    assert [m[0].output_size for m in mpm.short_pools] == [(4, 4), (2, 3)]


@pytest.mark.parametrize("name, widths", [("resnet50d", {"layer1.2": 64, "layer2.3": 128, "layer3.5": 256, "layer4.0": 512, "layer4.1": 512, "layer4.2": 512}), ("resnet18d", {"layer1.1": 64, "layer2.1": 128, "layer3.1": 256, "layer4.0": 512, "layer4.1": 512})])
def test_spm_placement_in_timm_resnets(name, widths):
    body = TimmBackbone(name, output_stride=8).body
    names = insert_strip_pooling(body)
    assert {n: body.get_submodule(n).aa[1].conv_h[0].in_channels for n in names} == widths
    spms = {n: m for n, m in body.named_modules() if isinstance(m, StripPooling)}
    assert len(spms) == len(widths)
    # the SPM sees the output of conv2 + BN + ReLU (bottleneck) and feeds conv3
    block = body.layer4[0]
    seen = {}
    spm = block.aa[1]
    spm.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    inner = {}
    last = block.conv3 if hasattr(block, "conv3") else block.conv2
    last.register_forward_hook(lambda m, i, o: inner.update(inp=i[0]))
    before = block.act2 if hasattr(block, "conv3") else block.act1
    before.register_forward_hook(lambda m, i, o: inner.update(act=o))
    body(torch.randn(1, 3, 64, 64))
    assert torch.equal(seen["inp"], inner["act"]) and torch.equal(seen["out"], inner["inp"])


def test_spm_needs_a_resnet():
    body = TimmBackbone("hrnet_w18_small").body
    with pytest.raises(ValueError, match="timm ResNet"):
        insert_strip_pooling(body)


def _conv_bn(seq, x, relu=False):
    """Conv (no bias) + eval-mode BN from a module's weights, written with the functional ops."""
    conv, bn = seq[0], seq[1]
    y = F.conv2d(x, conv.weight, None, padding=conv.padding)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.relu(y) if relu else y


def _randomise_norms(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_mpm_matches_the_released_block_written_plainly():
    # the release's StripPooling head block (SPNet customize.py), line by line, with its
    # up_kwargs (bilinear, align_corners=True) and our module's weights
    torch.manual_seed(0)
    mpm = MixedPooling(16, pool_sizes=(4, (2, 3))).double().eval()
    _randomise_norms(mpm)
    x = torch.randn(2, 16, 9, 11, dtype=torch.double)
    h, w = x.shape[-2:]
    up = dict(size=(h, w), mode="bilinear", align_corners=True)
    x1 = _conv_bn(mpm.reduce_short, x, relu=True)
    x2 = _conv_bn(mpm.reduce_long, x, relu=True)
    x2_1 = _conv_bn(mpm.short_local, x1)
    x2_2 = F.interpolate(_conv_bn(mpm.short_pools[0][1], F.adaptive_avg_pool2d(x1, 4)), **up)
    x2_3 = F.interpolate(_conv_bn(mpm.short_pools[1][1], F.adaptive_avg_pool2d(x1, (2, 3))), **up)
    x2_4 = F.interpolate(_conv_bn(mpm.long_w[1], F.adaptive_avg_pool2d(x2, (1, w))), **up)
    x2_5 = F.interpolate(_conv_bn(mpm.long_h[1], F.adaptive_avg_pool2d(x2, (h, 1))), **up)
    short = _conv_bn(mpm.short_out, F.relu(x2_1 + x2_2 + x2_3), relu=True)
    long = _conv_bn(mpm.long_out, F.relu(x2_5 + x2_4), relu=True)
    ref = F.relu(x + _conv_bn(mpm.merge, torch.cat([short, long], 1)))
    assert torch.allclose(mpm(x), ref, rtol=1e-10, atol=1e-12)
