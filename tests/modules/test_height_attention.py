import math

import pytest
import torch
import torch.nn.functional as F

from contextseg.modules import HeightAttention
from contextseg.modules.height_attention import height_encoding


def test_encoding_table():
    t = height_encoding(16, 5)
    assert t.shape == (16, 5) and t.min() >= 0 and t.max() <= 2
    # cycle 100 for <= 50 channels: channel 2 of row 3 = sin(3 / 100 ** (2 / 5)) + 1
    assert t[3, 2].item() == pytest.approx(math.sin(3 / 100 ** (2 / 5)) + 1, rel=1e-6)
    assert t[3, 3].item() == pytest.approx(math.cos(3 / 100 ** (2 / 5)) + 1, rel=1e-6)


def test_reference_and_width_broadcast():
    torch.manual_seed(0)
    ha = HeightAttention(8, 6, reduction=4, rows=4).double().eval()
    low = torch.randn(2, 8, 8, 5, dtype=torch.double)
    high = torch.randn(2, 6, 6, 7, dtype=torch.double)
    att = ha(low, high)
    assert att.shape == (2, 6, 6, 1)
    # reference: average every 2 rows of the width-mean, Conv1d stack, linear resize of the heights
    pooled = low.mean(3).view(2, 8, 4, 2).mean(3)
    z = ha.reduce(pooled) + height_encoding(4, 2).double().t()[None]
    ref = torch.sigmoid(ha.conv(z))
    ref = F.interpolate(ref, size=6, mode="linear", align_corners=False)
    assert torch.allclose(att[..., 0], ref, rtol=1e-6)
    gated = high * att  # broadcast along width only
    for j in range(7):
        assert torch.allclose(gated[..., j], high[..., j] * ref)


def test_positions_select_encoding_rows_and_none_means_full_image():
    torch.manual_seed(0)
    ha = HeightAttention(8, 6, reduction=4, rows=4).eval()
    low, high = torch.randn(1, 8, 8, 5), torch.randn(1, 6, 8, 5)
    full = torch.arange(8)[None] / 8
    assert torch.allclose(ha(low, high), ha(low, high, full))
    # the same features seen as the bottom half of a taller image get other encodings
    bottom = 0.5 + full / 2
    assert not torch.allclose(ha(low, high), ha(low, high, bottom))
    assert ha.row_index(bottom, 1, "cpu").tolist() == [[2, 2, 3, 3]]


def test_training_noise_is_integer_and_bounded():
    ha = HeightAttention(8, 6, reduction=4, rows=16).train()
    torch.manual_seed(0)
    idx = ha.row_index(None, 64, "cpu")
    delta = idx - torch.arange(16)
    assert delta.abs().max() <= 2 and delta.abs().sum() > 0
    ha.eval()
    assert torch.equal(ha.row_index(None, 2, "cpu"), torch.arange(16).expand(2, 16))


@pytest.mark.parametrize("image_height, crop_height", [(1024, 768), (360, 176), (360, 360), (180, 90), (96, 37)])
def test_row_index_follows_the_release_rule_for_crops_at_random_offsets(image_height, crop_height, release_row_index):
    ha = HeightAttention(8, 6, reduction=4, rows=16).eval()
    g = torch.Generator().manual_seed(image_height + crop_height)
    for top in torch.randint(0, image_height - crop_height + 1, (20,), generator=g).tolist():
        positions = ((top + torch.arange(crop_height)) / image_height)[None]  # what the transforms carry
        assert ha.row_index(positions, 1, "cpu")[0].tolist() == release_row_index(top, crop_height, image_height)


def test_positions_are_looked_up_at_image_rows_whatever_the_low_level_height(release_row_index):
    # 10 low-level rows (not a multiple of 16) from a 40-row crop: the lookup reads the crop's rows
    torch.manual_seed(0)
    ha = HeightAttention(8, 6, reduction=4, rows=16).eval()
    low, high = torch.randn(1, 8, 10, 5), torch.randn(1, 6, 10, 5)
    positions = ((50 + torch.arange(40)) / 360)[None]
    expected = torch.tensor(release_row_index(50, 40, 360))
    pooled = F.adaptive_avg_pool2d(low, (16, 1))[..., 0]
    z = ha.reduce(pooled) + height_encoding(17, 2)[expected].t()[None]
    ref = F.interpolate(torch.sigmoid(ha.conv(z)), size=10, mode="linear", align_corners=False)
    assert torch.allclose(ha(low, high, positions)[..., 0], ref, atol=1e-6)


def test_training_noise_is_floor_of_a_half_sigma_normal_clamped():
    # the release: pos + clamp(floor(N(0, 0.5)), -2, 2), then clamp to the 17-row table [0, 16]
    ha = HeightAttention(8, 6, reduction=4, rows=16).train()
    torch.manual_seed(5)
    index = ha.row_index(None, 256, "cpu")
    torch.manual_seed(5)
    noise = torch.floor(torch.randn(256, 16) * 0.5).clamp(-2, 2).long()
    assert torch.equal(index, (torch.arange(16) + noise).clamp(0, 16))
    assert index.max() == 16  # the table's 17th row is reachable, as in the release

