import pytest
import torch

from contextseg.backbones import TimmBackbone


@pytest.mark.parametrize("os_, expected", [(8, [4, 8, 8, 8]), (16, [4, 8, 16, 16]), (32, [4, 8, 16, 32])])
def test_resnet_output_stride_and_shapes(os_, expected):
    b = TimmBackbone("resnet18d", output_stride=os_)
    assert b.reductions == expected and b.channels == [64, 128, 256, 512]
    feats = b(torch.randn(1, 3, 65, 97))
    for f, r, c in zip(feats, expected, b.channels):
        assert f.shape == (1, c, -(-65 // r), -(-97 // r))


def test_resnet50d_dilation_is_2_then_4_without_multigrid():
    b = TimmBackbone("resnet50d", output_stride=8).body
    assert b.layer3[1].conv2.dilation == (2, 2)
    assert [blk.conv2.dilation for blk in b.layer4] == [(2, 2), (4, 4), (4, 4)]  # timm's contract dilation
    assert b.conv1[0].out_channels == 32  # deep stem of the "d" family


def test_hrnet_pads_odd_sizes_and_crops_back():
    b = TimmBackbone("hrnet_w18_small", output_stride=8)  # cannot dilate: stays 4/8/16/32
    assert b.reductions == [4, 8, 16, 32] and b.channels == [16, 32, 64, 128]
    feats = b(torch.randn(1, 3, 65, 97))
    assert [tuple(f.shape[-2:]) for f in feats] == [(17, 25), (9, 13), (5, 7), (3, 4)]


def test_local_pretrained_weights_load(tmp_path):
    src = TimmBackbone("resnet18d", output_stride=32)
    import timm
    from safetensors.torch import save_file

    full = timm.create_model("resnet18d")  # a classifier checkpoint, as from the hub: has fc.*
    torch.save(full.state_dict(), tmp_path / "r18.pth")
    save_file(full.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.state_dict().items()}}, tmp_path / "wrapped.pt")
    for name in ("r18.pth", "r18.safetensors", "wrapped.pt"):
        b = TimmBackbone("resnet18d", output_stride=8, pretrained=tmp_path / name)
        assert torch.equal(b.body.conv1[0].weight, full.conv1[0].weight)
        assert torch.equal(b.body.layer4[1].bn2.running_var, full.layer4[1].bn2.running_var)
    assert not torch.equal(src.body.conv1[0].weight, full.conv1[0].weight)


def test_bad_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a timm model"):
        TimmBackbone("resnet5000")
    with pytest.raises(ValueError, match="output_stride"):
        TimmBackbone("resnet18d", output_stride=4)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        TimmBackbone("resnet18d", pretrained=tmp_path / "missing.pth")
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no tensor in .*other.pth"):
        TimmBackbone("resnet18d", pretrained=tmp_path / "other.pth")


@pytest.mark.parametrize(
    "name, channels",
    [
        ("resnet50d", [256, 512, 1024, 2048]),
        ("resnet101d", [256, 512, 1024, 2048]),
        ("hrnet_w18", [18, 36, 72, 144]),
        ("hrnet_w48", [48, 96, 192, 384]),  # 720 channels once concatenated, as OCRNet uses them
    ],
)
def test_paper_backbones_build_with_the_right_widths(name, channels):
    b = TimmBackbone(name, output_stride=8)
    assert b.channels == channels
    feats = b(torch.randn(1, 3, 33, 47))
    assert [f.shape[1] for f in feats] == channels
    assert feats[-1].shape[-2:] == ((5, 6) if name.startswith("resnet") else (2, 2))


def test_hrnet_fuse_upsample_bilinear_is_mmsegs_resize():
    """fuse_upsample="bilinear": every fuse layer upsamples as mmseg's HRNet (bilinear,
    align_corners=False) instead of timm's nearest; the branch outputs change, shapes do not."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    nearest = TimmBackbone("hrnet_w18_small", output_stride=32).eval()
    bilinear = TimmBackbone("hrnet_w18_small", output_stride=32, fuse_upsample="bilinear").eval()
    bilinear.load_state_dict(nearest.state_dict())
    ups = [m for m in bilinear.body.modules() if isinstance(m, torch.nn.Upsample)]
    assert ups and all(m.mode == "bilinear" and m.align_corners is False for m in ups)
    x = torch.randn(1, 8, 4, 6)
    torch.testing.assert_close(ups[0](x), F.interpolate(x, scale_factor=ups[0].scale_factor, mode="bilinear", align_corners=False))
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = nearest(img), bilinear(img)
    assert [t.shape for t in a] == [t.shape for t in b] and not torch.allclose(a[0], b[0])
    with pytest.raises(ValueError, match="HRNet option"):
        TimmBackbone("resnet18d", fuse_upsample="bilinear")
