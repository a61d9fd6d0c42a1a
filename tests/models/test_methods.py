"""The context methods as whole models: shape contracts, paper losses, overfitting (bf16: test_precision.py)."""

import re

import pytest
import torch

import contextseg as cs
from contextseg.data import build_dataset
from contextseg.data.transforms import EvalTransform

METHODS = [n for n in cs.list_models() if cs.models.get_model_class(n).has_context_maps()]  # the context methods
def build(name, size, num_classes=9, **kw):
    options = cs.models.get_model_class(name).small_options(size)
    return cs.create_model(name, num_classes=num_classes, backbone="resnet18d", **{**options, **kw})


def paper_loss_terms(name: str) -> set[str]:
    """The loss terms a model's paper trains it with, as ``configs/<name>/README.md`` states them in a
    line ``Loss terms: `loss_seg`, ...``: a fact per paper, written beside the recipes and read here
    independently of the class's own ``loss_terms``."""
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "configs" / name / "README.md"
    lines = [line for line in (readme.read_text().splitlines() if readme.is_file() else []) if line.startswith("Loss terms: ")]
    assert len(lines) == 1, (f"{readme.relative_to(readme.parents[2])} needs one line 'Loss terms: `loss_seg`, ...' "
                             f"naming the loss terms {name}'s paper trains it with")
    return set(re.findall(r"`(loss_\w+)`", lines[0]))


def test_paper_loss_terms_and_weights():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 9, (2, 64, 64))
    for name in cs.list_models():
        losses = build(name, (64, 64)).train()(x, y)
        assert set(losses) == paper_loss_terms(name) | {"loss"}, name
    # the weights are the papers': SE 0.2, object regions 0.4, affinity 1.0, aux 0.4
    enc = build("encnet", (64, 64)).train()
    out = enc(x, y)
    assert enc.decode_head.se_weight == 0.2 and enc.aux_weight == 0.4
    assert build("ocrnet", (64, 64)).decode_head.region_weight == 0.4
    assert build("cpnet", (64, 64)).decode_head.affinity_weight == 1.0
    assert build("ocrnet", (64, 64)).aux_head is None
    assert out["loss"].requires_grad


def test_cpnet_refuses_a_feature_size_other_than_its_prior():
    model = build("cpnet", (64, 64)).eval()
    with pytest.raises(ValueError, match=r"8x10 feature map but its prior_size is 8x8.*slide"):
        model(torch.randn(1, 3, 64, 80))
    # sliding windows of the training crop make any image size work
    probs = cs.engine.inference(model, torch.randn(1, 3, 90, 150), mode="slide", crop_size=(64, 64))
    assert probs.shape == (1, 9, 90, 150)


def test_hanet_uses_positions_and_spnet_has_spm():
    model = build("hanet", (64, 64)).eval()
    assert model.uses_positions
    x = torch.randn(1, 3, 64, 64)
    top = (torch.arange(64) + 0.5)[None] / 128  # the input is the top half of a taller frame
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x, positions=top))
    spnet = build("spnet", (64, 64))
    assert sum(isinstance(m, cs.modules.StripPooling) for m in spnet.backbone.modules()) == 5
    assert sum(isinstance(m, cs.modules.StripPooling) for m in build("spnet", (64, 64), spm=False).modules()) == 0


@pytest.fixture(scope="module")
def tiny_batch():
    ds = build_dataset("synthetic", None, "train", transforms=EvalTransform(), size=(64, 128), length=2)
    samples = [ds[i] for i in range(2)]
    return torch.stack([s["image"] for s in samples]), torch.stack([s["mask"] for s in samples])


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_overfits_a_tiny_synthetic_batch(name, tiny_batch):
    torch.manual_seed(0)
    images, masks = tiny_batch
    model = build(name, tuple(images.shape[-2:])).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    history = []
    for _ in range(40):
        losses = model(images, masks)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert history[-1]["loss_seg"] < 0.5 * history[0]["loss_seg"], [h["loss_seg"] for h in history[::5]]
    assert history[-1]["loss"] < history[0]["loss"]


def test_ocrnet_hrnet_variant_concatenates_the_branches():
    torch.manual_seed(0)
    model = cs.create_model("ocrnet", num_classes=9, backbone="hrnet_w18_small")
    head = model.decode_head
    assert head.concat_inputs and head.pixel_conv[0].in_channels == 16 + 32 + 64 + 128
    assert head.dropout.p == 0.05 and model.aux_head is None
    model.train()
    losses = model(torch.randn(2, 3, 65, 97), torch.randint(0, 9, (2, 65, 97)))
    assert set(losses) == {"loss", "loss_seg", "loss_object_regions"}
    losses["loss"].backward()
    assert head.region_head[1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 97)).shape == (1, 9, 65, 97)
    resnet = build("ocrnet", (64, 64)).decode_head
    assert not resnet.concat_inputs and resnet.dropout.p == 0.1


def test_top_level_namespaces():
    assert callable(cs.data.build_dataset) and callable(cs.engine.inference) and callable(cs.metrics.SegmentationMetric)


def test_hanet_aux_loss_is_computed_at_feature_resolution():
    # the release's dsn loss: aux logits at layer3's size against nearest-downsampled labels
    torch.manual_seed(0)
    model = cs.create_model("hanet", num_classes=4, backbone="resnet18d", hanet_reduction=16)
    targets = torch.randint(0, 4, (2, 64, 48))
    targets[:, :8] = 255
    aux_logits = torch.randn(2, 4, 8, 6)
    outputs = {"logits": torch.randn(2, 4, 16, 12)}
    terms = model.losses(outputs, aux_logits, targets)
    small = targets[:, ::8, ::8]  # nearest neighbour at stride 8 (F.interpolate's rule)
    expected = 0.4 * torch.nn.functional.cross_entropy(aux_logits, small, ignore_index=255)
    assert torch.allclose(terms["loss_aux"], expected)
