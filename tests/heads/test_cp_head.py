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
