import pytest
import torch

from contextseg.losses import SemanticEncodingLoss
from contextseg.losses.semantic_encoding import class_presence


def test_presence_targets_drop_ignore_and_match_a_loop():
    labels = torch.tensor([[[0, 0, 255], [2, 2, 255]], [[255, 255, 255], [255, 255, 255]], [[1, 3, 1], [1, 1, 1]]])
    got = class_presence(labels, 4)
    expected = torch.zeros(3, 4)
    for b in range(3):
        for v in labels[b].flatten().tolist():
            if v != 255:
                expected[b, v] = 1
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="outside 0..3"):
        class_presence(torch.tensor([[[9]]]), 4)


def test_loss_is_bce_on_presence_mean_over_batch_and_classes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.double, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (3, 5, 5), generator=g)
    labels[0] = 255
    t = class_presence(labels, 4).double()
    p = torch.sigmoid(logits)
    ref = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    loss = SemanticEncodingLoss(4)
    assert loss(logits, labels).item() == pytest.approx(ref.item(), rel=1e-9)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels), (logits,))
