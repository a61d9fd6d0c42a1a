"""CCHead wiring against mmsegmentation's CCHead.forward, written plainly, and its context maps."""

import pytest
import torch

from contextseg.heads import CCHead


def small_head(recurrence=2):
    torch.manual_seed(0)
    head = CCHead([8, 12, 16, 24], num_classes=5, channels=16, recurrence=recurrence).double().eval()
    with torch.no_grad():
        head.cca.gamma.fill_(0.5)  # 0 at initialisation: the attention would not show
    return head


def features(b=2, h=6, w=7):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, c, h, w, generator=g, dtype=torch.double) for c in (8, 12, 16, 24)]


def test_forward_is_the_rcca_wiring():
    # CCHead.forward: convs[0] -> the same cca R times -> convs[1] -> conv_cat(cat[x, .]) -> cls_seg
    head = small_head()
    feats = features()
    x = feats[3]
    out = head.convs[0](x)
    out = head.cca(head.cca(out))
    out = head.conv_cat(torch.cat([x, head.convs[1](out)], 1))
    assert torch.allclose(head(feats)["logits"], head.conv_seg(out), rtol=1e-10, atol=1e-12)
    one = small_head(recurrence=1)
    assert not torch.allclose(one(feats)["logits"], head(feats)["logits"])  # R is used


def test_init_is_the_release_one():
    # mmseg's ConvModules kaiming, the classifier N(0, 0.01), the cca's plain convs PyTorch's default, gamma 0
    head = CCHead([8, 12, 16, 256], num_classes=5, channels=256)
    head.init_weights()  # as the segmentor does
    assert float(head.cca.gamma.detach()) == 0.0
    assert abs(float(head.convs[0][0].weight.std()) - (2 / (256 * 9)) ** 0.5) < 0.002  # kaiming normal, fan_out
    bound = 1 / 256**0.5  # PyTorch's default on a 1x1 conv of 256 inputs: uniform(-bound, bound), bias too
    value = head.cca.value_conv
    assert abs(float(value.weight.std()) - bound / 3**0.5) < 0.002 and float(value.weight.abs().max()) <= bound
    assert bool(value.bias.abs().sum() > 0) and float(value.bias.abs().max()) <= bound  # kaiming would zero it


def test_context_maps_are_the_cca_attention_of_the_query_pixel():
    head = small_head()
    feats = [f[:1] for f in features()]
    maps = head.context_maps(feats, pixels=[(13, 9)], image_size=(48, 56))  # (x, y) -> cell (1, 1) of 6x7
    assert [m.title.split(":")[0] for m in maps] == ["pass 1", "pass 2", "after two passes"]
    with torch.no_grad():
        first_in = head.convs[0](feats[3])
        first = head.cca.attention(first_in)[0]
        second = head.cca.attention(head.cca(first_in))[0]
    assert torch.allclose(torch.from_numpy(maps[0].values).double(), head.cca.cross_map(first, (1, 1)).float().double())
    assert torch.allclose(torch.from_numpy(maps[1].values).double(), head.cca.cross_map(second, (1, 1)).float().double())
    assert torch.allclose(torch.from_numpy(maps[2].values).double(), head.cca.reach_map(first, second, (1, 1)).float().double())
    assert (maps[0].values[1] > 0).all() and (maps[0].values[:, 1] > 0).all() and maps[0].values[0, 0] == 0
    assert all(m.pixel == (13, 9) for m in maps)


def test_recurrence_must_be_positive():
    with pytest.raises(ValueError, match="recurrence >= 1"):
        CCHead([8, 12, 16, 24], num_classes=5, channels=16, recurrence=0)
