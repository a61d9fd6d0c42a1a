"""HANetHead wiring against the released DeepV3PlusHANet forward, written plainly."""

import torch
import torch.nn.functional as F

from contextseg.heads import HANetHead
from contextseg.modules import HeightAttention


def small_head():
    torch.manual_seed(0)
    return HANetHead([8, 12, 16, 24], num_classes=5, channels=16, c1_channels=6, output_stride=8, hanet_reduction=4).double().eval()


def features(b=2, h=12, w=10):
    g = torch.Generator().manual_seed(1)
    sizes = [(8, 2 * h, 2 * w), (12, h, w), (16, h, w), (24, h, w)]  # C2 at stride 4, the rest at 8
    return [torch.randn(b, c, hh, ww, generator=g, dtype=torch.double) for c, hh, ww in sizes]


def test_forward_is_the_release_wiring():
    # deepv3.py DeepV3PlusHANet.forward with flags 1 1 1 1 0: each block reads the map *after*
    # the previous modulation, the decoder concatenates [fine, upsampled] with align_corners=True
    head = small_head()
    feats = features()
    positions = ((7 + torch.arange(48)) / 100).double().expand(2, 48)
    c2, c4, c5 = feats[0], feats[2], feats[3]
    x = c5 * head.hanet[0](c4, c5, positions)
    represent = x
    aspp = head.aspp(x)
    aspp = aspp * head.hanet[1](represent, aspp, positions)
    dec0_up = head.bottleneck(aspp)
    dec0_up = dec0_up * head.hanet[2](aspp, dec0_up, positions)
    dec0_fine = head.c1_bottleneck(c2)
    dec0_up = F.interpolate(dec0_up, size=c2.shape[-2:], mode="bilinear", align_corners=True)
    dec0 = torch.cat([dec0_fine, dec0_up], 1)
    dec1 = head.sep_bottleneck(dec0)
    dec1 = dec1 * head.hanet[3](dec0, dec1, positions)
    ref = head.conv_seg(dec1)  # no dropout before the classifier in the release
    assert isinstance(head.dropout, torch.nn.Identity)
    assert torch.allclose(head(feats, positions=positions)["logits"], ref, rtol=1e-10, atol=1e-12)


def test_every_block_looks_up_the_release_rows(monkeypatch, release_row_index):
    # a 176-row crop at offset 37 of a 360-row frame; low-level maps of 22 and 44 rows (not
    # multiples of 16): every block must use the release's index, taken from the image rows
    head = small_head()
    seen = []
    original = HeightAttention.row_index

    def record(self, positions, batch, device):
        index = original(self, positions, batch, device)
        seen.append(index)
        return index

    monkeypatch.setattr(HeightAttention, "row_index", record)
    feats = features(b=1, h=22, w=6)
    positions = ((37 + torch.arange(176)) / 360).double()[None]
    head(feats, positions=positions)
    expected = release_row_index(37, 176, 360)
    assert len(seen) == 4 and all(index[0].tolist() == expected for index in seen)
