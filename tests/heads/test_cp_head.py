"""CPHead: the Affinity Loss it owns is the released one (ignore = an extra class) by default."""

import inspect

import torch

from contextseg.heads import CPHead
from contextseg.losses import AffinityLoss


def test_default_ignore_mode_is_the_released_extra_class():
    torch.manual_seed(0)
    head = CPHead([8, 12, 16, 24], num_classes=3, prior_size=(3, 4), prior_channels=8, channels=8)
    assert inspect.signature(CPHead).parameters["ignore_mode"].default == "extra_class"
    logits = torch.randn(2, 12, 12)
    labels = torch.randint(0, 3, (2, 6, 8))
    labels[:, :2] = 255  # ignored pixels: an extra class in the release, dropped pairs in "mask"
    got = head.losses({"prior_logits": logits}, labels)["loss_affinity"]
    released = AffinityLoss(3, ignore_mode="extra_class")(logits, labels, (3, 4))
    masked = AffinityLoss(3, ignore_mode="mask")(logits, labels, (3, 4))
    assert torch.allclose(got, released) and not torch.allclose(got, masked)


def test_cpnet_fused_by_default_gets_its_loss_from_the_forward_pass_and_equals_plain():
    """The segmentor hands the fused head its targets (the Affinity Loss is computed on the same
    row blocks as the context); every loss term and every gradient equals the plain form's."""
    import contextseg as cs

    torch.manual_seed(0)
    fused = cs.create_model("cpnet", num_classes=3, backbone="resnet18d", channels=8, prior_size=(4, 5)).double().train()
    plain = cs.create_model("cpnet", num_classes=3, backbone="resnet18d", channels=8, prior_size=(4, 5), fused=False).double().train()
    plain.load_state_dict(fused.state_dict())
    assert fused.decode_head.context_prior.fused and fused.decode_head.loss_in_forward
    seen = {}
    fused.decode_head.register_forward_hook(lambda m, args, kwargs, out: seen.update(kwargs=kwargs, out=out), with_kwargs=True)
    torch.manual_seed(1)
    x, y = torch.randn(2, 3, 32, 40, dtype=torch.double), torch.randint(0, 3, (2, 32, 40))
    torch.manual_seed(2)
    losses_f = fused(x, y)
    torch.manual_seed(2)  # the same dropout masks
    losses_p = plain(x, y)
    assert seen["kwargs"]["targets"] is y and "loss_affinity" in seen["out"] and "prior_logits" not in seen["out"]
    assert losses_f.keys() == losses_p.keys()
    for name in losses_p:
        torch.testing.assert_close(losses_f[name], losses_p[name], rtol=1e-10, atol=1e-12)
    losses_f["loss_affinity"].backward()
    losses_p["loss_affinity"].backward()
    grads_p = dict(plain.named_parameters())
    for name, p in fused.named_parameters():
        if p.grad is not None or grads_p[name].grad is not None:
            torch.testing.assert_close(p.grad, grads_p[name].grad, rtol=1e-8, atol=1e-12, msg=name)
    assert fused.backbone.body.conv1[0].weight.grad.abs().sum() > 0  # the loss reaches the backbone through the prior
