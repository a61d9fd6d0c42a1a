"""DAHead wiring against mmsegmentation's DAHead.forward and loss_by_feat, written plainly."""

import torch
import torch.nn.functional as F

from contextseg.heads import DAHead


def small_head():
    torch.manual_seed(0)
    head = DAHead([8, 12, 16, 24], num_classes=5, channels=16, pam_channels=4).double()
    head.init_weights()
    with torch.no_grad():
        head.pam.gamma.fill_(0.5), head.cam.gamma.fill_(0.3)
    return head


def features(b=2, h=6, w=7):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, c, h, w, generator=g, dtype=torch.double) for c in (8, 12, 16, 24)]


def test_forward_is_the_release_wiring():
    head = small_head().eval()
    feats = features()
    x = feats[3]
    pam = head.pam_out_conv(head.pam(head.pam_in_conv(x)))
    cam = head.cam_out_conv(head.cam(head.cam_in_conv(x)))
    out = head(feats)
    assert torch.allclose(out["logits"], head.conv_seg(pam + cam), rtol=1e-10, atol=1e-12)
    assert torch.allclose(out["pam_logits"], head.pam_conv_seg(pam), rtol=1e-10, atol=1e-12)
    assert torch.allclose(out["cam_logits"], head.cam_conv_seg(cam), rtol=1e-10, atol=1e-12)


def test_branch_losses_are_cross_entropies_of_the_upsampled_branch_logits():
    head = small_head().eval()
    out = head(features())
    targets = torch.randint(0, 5, (2, 24, 28))
    targets[:, :3] = 255
    losses = head.losses(out, targets)
    for key, branch in (("loss_pam", "pam_logits"), ("loss_cam", "cam_logits")):
        up = F.interpolate(out[branch], size=(24, 28), mode="bilinear", align_corners=False)
        assert torch.allclose(losses[key], F.cross_entropy(up.float(), targets, ignore_index=255), rtol=1e-6)  # losses run in fp32


def test_each_branch_loss_trains_its_own_branch():
    # the position loss reaches the position branch's classifier and not the channel branch's
    head = small_head().train()
    out = head(features())
    head.losses(out, torch.randint(0, 5, (2, 6, 7)))["loss_pam"].backward()
    assert head.pam_conv_seg.weight.grad.abs().sum() > 0 and head.pam.query_project.weight.grad.abs().sum() > 0
    assert head.cam_conv_seg.weight.grad is None and head.conv_seg.weight.grad is None


def test_init_is_the_release_one():
    head = DAHead([8, 12, 16, 256], num_classes=5, channels=256, pam_channels=64)
    head.init_weights()
    assert float(head.pam.gamma.detach()) == 0.0 and float(head.cam.gamma.detach()) == 0.0
    bound = 1 / 256**0.5  # PyTorch's default uniform on a 1x1 conv of 256 inputs: the branch classifiers and the projections
    for conv in (head.pam_conv_seg, head.cam_conv_seg, head.pam.value_project):
        assert float(conv.weight.abs().max()) <= bound and bool(conv.bias.abs().sum() > 0)
    assert float(head.conv_seg.weight.std()) < 0.012 and not bool(head.conv_seg.bias.any())  # N(0, 0.01), bias 0


def test_context_maps_are_the_module_attentions():
    head = small_head().eval()
    feats = [f[:1] for f in features()]
    with torch.no_grad():
        maps = head.context_maps(feats, pixels=[(13, 9)], image_size=(48, 56))  # -> cell (1, 1) of 6x7
        row = head.pam.attention(head.pam_in_conv(feats[3]))[0, 1 * 7 + 1]
        channel = head.cam.attention(head.cam_in_conv(feats[3]))[0]
    assert [m.kind for m in maps] == ["pixel_map", "matrix"]
    assert torch.allclose(torch.from_numpy(maps[0].values).double(), row.view(6, 7).float().double())
    assert torch.allclose(torch.from_numpy(maps[1].values).double(), channel.float().double())
    assert maps[0].pixel == (13, 9) and abs(float(maps[0].values.sum()) - 1) < 1e-5
