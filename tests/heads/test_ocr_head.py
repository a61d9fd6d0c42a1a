"""OCRHead wiring: the soft object regions feed the OCR path, not only their own loss."""

import torch

from contextseg.heads import OCRHead


def test_region_head_gets_gradient_through_the_ocr_path_alone():
    # The object-region logits are supervised by their own CE *and* feed SpatialGather; the
    # second path must carry gradient by itself (a detached region map would leave it empty).
    torch.manual_seed(0)
    head = OCRHead([8, 12, 16, 24], num_classes=4, channels=16, key_channels=8, region_channels=8).train()
    feats = [torch.randn(2, c, 6, 5) for c in (8, 12, 16, 24)]
    out = head(feats)
    out["logits"].square().mean().backward()  # the main output only, no region loss
    region_params = [p for p in head.region_head.parameters() if p.requires_grad]
    assert region_params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in region_params)
    # and the gather really reads the region logits: sharper regions change the output (a
    # per-region constant would not: the spatial softmax ignores it)
    head.eval()
    with torch.no_grad():
        base = head(feats)["logits"]
        head.region_head.conv_seg.weight.mul_(50.0)
        assert not torch.allclose(head(feats)["logits"], base)
