"""NLHead wiring against mmsegmentation's NLHead.forward, written plainly, its init and its context maps."""

import pytest
import torch

from contextseg.heads import NLHead


def small_head(**options):
    torch.manual_seed(0)
    head = NLHead([8, 12, 16, 24], num_classes=5, channels=16, **options).double()
    head.init_weights()
    with torch.no_grad():
        head.nl_block.conv_out[1].weight.fill_(0.7)  # W_z's norm starts at 0: the block would be the identity
    return head.eval()


def features(b=2, h=6, w=7):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, c, h, w, generator=g, dtype=torch.double) for c in (8, 12, 16, 24)]


def test_forward_is_the_release_wiring():
    # NLHead.forward: convs[0] -> nl_block -> convs[1] -> conv_cat(cat[x, .]) -> cls_seg
    head = small_head()
    feats = features()
    x = feats[3]
    seen = []
    hook = head.nl_block.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    logits = head(feats)["logits"]
    hook.remove()
    assert len(seen) == 1 and torch.allclose(seen[0], head.convs[0](x), rtol=1e-12, atol=1e-14)  # fed the first conv's output
    out = head.convs[1](head.nl_block(head.convs[0](x)))
    out = head.conv_cat(torch.cat([x, out], 1))
    assert torch.allclose(logits, head.conv_seg(out), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(head.nl_block(head.convs[0](x)), head.convs[0](x))  # the block does something here


def test_without_concat_input_the_second_conv_feeds_the_classifier():
    head = small_head(concat_input=False)
    feats = features()
    assert head.conv_cat is None
    expected = head.conv_seg(head.convs[1](head.nl_block(head.convs[0](feats[3]))))
    assert torch.allclose(head(feats)["logits"], expected, rtol=1e-10, atol=1e-12)
    assert "conv_cat.0.weight" in small_head().state_dict()  # and with it (the default, mmseg's) the input is fused


def test_the_attention_learns_through_the_logits_once_the_zero_norm_is_perturbed():
    torch.manual_seed(0)
    head = NLHead([8, 12, 16, 24], num_classes=5, channels=16).double()
    head.init_weights()
    feats = features()
    head(feats)["logits"].pow(2).sum().backward()
    gate = head.nl_block.conv_out[1]
    assert not bool(head.nl_block.theta.weight.grad.any())  # at init the zero norm blocks the attention's gradient
    assert bool(gate.weight.grad.abs().sum() > 0)  # while the gate itself learns
    head.zero_grad()
    with torch.no_grad():
        gate.weight.normal_(0.0, 0.1)
    head(feats)["logits"].pow(2).sum().backward()
    for conv in (head.nl_block.theta, head.nl_block.phi, head.nl_block.g):
        assert bool(conv.weight.grad.abs().sum() > 0)


def test_init_is_the_release_one():
    # mmseg's ConvModules kaiming (fan_out), the classifier N(0, 0.01), mmcv's NonLocal2d: theta, phi, g N(0, 0.01), zero norm
    head = NLHead([8, 12, 16, 256], num_classes=5, channels=256)
    head.init_weights()  # as the segmentor does
    block = head.nl_block
    assert block.inter_channels == 128
    assert abs(float(head.convs[0][0].weight.detach().std()) - (2 / (256 * 9)) ** 0.5) < 0.002
    for conv in (block.g, block.theta, block.phi):
        assert abs(float(conv.weight.detach().std()) - 0.01) < 0.0005 and not bool(conv.bias.any())
    assert not bool(block.conv_out[1].weight.any()) and not bool(block.conv_out[1].bias.any())
    assert float(head.conv_seg.weight.detach().std()) < 0.012 and not bool(head.conv_seg.bias.any())
    x = torch.randn(1, 256, 4, 5)
    assert torch.equal(block(x), x)


def test_context_maps_are_the_non_local_attention_of_the_query_pixel():
    head = small_head()
    feats = [f[:1] for f in features()]
    with torch.no_grad():
        maps = head.context_maps(feats, pixels=[(13, 9), (55, 47)], image_size=(48, 56))  # (x, y) -> cells (1, 1) and (5, 6) of 6x7
        rows = head.nl_block.attention(head.convs[0](feats[3]))[0]  # (N, N), all rows
    assert [m.kind for m in maps] == ["pixel_map", "pixel_map"] and [m.pixel for m in maps] == [(13, 9), (55, 47)]
    for m, cell in zip(maps, (1 * 7 + 1, 5 * 7 + 6)):
        assert m.values.shape == (6, 7)
        assert torch.allclose(torch.from_numpy(m.values).double(), rows[cell].view(6, 7).float().double())
        assert abs(float(m.values.sum()) - 1) < 1e-5
    assert not torch.allclose(torch.from_numpy(maps[0].values), torch.from_numpy(maps[1].values))
    assert head.context_maps(feats, pixels=[], image_size=(48, 56)) == []


def test_reduction_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="reduction >= 1"):
        NLHead([8, 12, 16, 24], num_classes=5, channels=16, reduction=0)
