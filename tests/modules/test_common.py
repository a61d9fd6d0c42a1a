"""modules/common.py: the adaptive average pooling an exported graph can take at any size."""

import pytest
import torch
import torch.nn.functional as F

from contextseg.modules.common import AdaptiveAvgPool2d, adaptive_avg_pool2d


def plain_bins(x: torch.Tensor, out_h, out_w) -> torch.Tensor:
    """Adaptive pooling written out: bin (r, s) averages rows floor(r H / out_h) .. ceil((r + 1) H / out_h)
    and the same for columns; None keeps the axis."""
    h, w = x.shape[-2:]
    rows = [(r * h // out_h, -(-(r + 1) * h // out_h)) for r in range(out_h)] if out_h else [(i, i + 1) for i in range(h)]
    cols = [(s * w // out_w, -(-(s + 1) * w // out_w)) for s in range(out_w)] if out_w else [(j, j + 1) for j in range(w)]
    return torch.stack([torch.stack([x[..., a:b, c:d].mean(dim=(-2, -1)) for c, d in cols], -1) for a, b in rows], -2)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (6, 6), (11, 15), (13, 29), (60, 45)])
@pytest.mark.parametrize("output", [1, 2, 3, 6, (20, 12), (1, None), (None, 1), (16, 1)])
def test_export_form_gives_adaptive_pooling_bins_at_any_size(size, output, monkeypatch):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    out_h, out_w = (output, output) if isinstance(output, int) else output
    expected = plain_bins(x, out_h, out_w)
    torch.testing.assert_close(F.adaptive_avg_pool2d(x, output), expected, rtol=0, atol=1e-12)  # the reference is torch's
    assert torch.equal(adaptive_avg_pool2d(x, output), F.adaptive_avg_pool2d(x, output))  # eager: torch's op itself
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    torch.testing.assert_close(adaptive_avg_pool2d(x, output), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(AdaptiveAvgPool2d(output)(x), expected, rtol=0, atol=1e-12)


def test_gradients_flow_through_the_export_form(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: adaptive_avg_pool2d(t, (3, 4)), (x,))


@pytest.mark.parametrize("height", [1, 3, 5, 6, 15, 16, 17, 24, 37, 45, 100])
def test_hanet_row_pooling_while_exporting_is_adaptive_pooling_at_any_height(height, monkeypatch):
    """The averaging-matrix form used while a graph is exported (so an ONNX file takes any height)
    gives adaptive pooling's bins exactly, fewer image rows than bins included (bins then overlap)."""
    low = torch.randn(2, 3, height, 7, dtype=torch.float64)
    expected = F.adaptive_avg_pool2d(low, (16, 1))[..., 0]
    assert torch.equal(adaptive_avg_pool2d(low, (16, 1))[..., 0], expected)  # eager mode: adaptive pooling itself
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    bins = [(r * height // 16, -(-(r + 1) * height // 16)) for r in range(16)]  # floor, ceil
    plain = torch.stack([low[:, :, a:b].mean(dim=(2, 3)) for a, b in bins], dim=-1)
    torch.testing.assert_close(adaptive_avg_pool2d(low, (16, 1))[..., 0], plain, rtol=0, atol=1e-12)
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-12)
