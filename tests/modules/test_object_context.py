import torch

from contextseg.modules import ObjectContextBlock, SpatialGather


def test_spatial_gather_is_a_spatial_softmax_per_region():
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 3, 4, dtype=torch.double)
    logits = torch.randn(2, 3, 3, 4, dtype=torch.double)
    out = SpatialGather(scale=2.0)(feats, logits)
    assert out.shape == (2, 5, 3, 1)
    for b in range(2):
        for k in range(3):
            w = torch.exp(2.0 * logits[b, k]).flatten()
            w = w / w.sum()
            f = (w[None] * feats[b].flatten(1)).sum(1)
            assert torch.allclose(out[b, :, k, 0], f, rtol=1e-6)


def test_object_context_attention_matches_loops_over_regions():
    torch.manual_seed(0)
    block = ObjectContextBlock(6, key_channels=4).double().eval()
    pixels = torch.randn(1, 6, 2, 3, dtype=torch.double)
    regions = torch.randn(1, 6, 5, 1, dtype=torch.double)
    out = block(pixels, regions)
    q = block.query(pixels)[0]  # (4, 2, 3)
    k = block.key(regions)[0, :, :, 0]  # (4, 5)
    v = block.value(regions)[0, :, :, 0]  # (4, 5)
    context = torch.zeros(1, 4, 2, 3, dtype=torch.double)
    for y in range(2):
        for x in range(3):
            sims = torch.stack([(q[:, y, x] * k[:, r]).sum() / 2.0 for r in range(5)])  # sqrt(4) = 2
            w = torch.softmax(sims, 0)
            context[0, :, y, x] = sum(w[r] * v[:, r] for r in range(5))
    assert torch.allclose(out, block.out(context), rtol=1e-6)
