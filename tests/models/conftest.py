"""The every-model checks, shared by the registry-wide test and the toy-method test."""

import json

import numpy as np
import pytest
import torch

import contextseg as cs

SIZE = (48, 64)


def small(name):
    torch.manual_seed(0)
    options = cs.models.get_model_class(name).small_options(SIZE)
    return cs.create_model(name, num_classes=4, backbone="resnet18d", channels=16, **options)


def perturb_zero_initialised(model):
    """Give every all-zero parameter (a zero-initialised gate such as CCNet's or DANet's gamma, the
    last norm of a residual block) small random values, as timm's tests do: at exactly zero such a
    gate blocks the gradient of everything behind it, so a test of "every parameter learns" would
    pass or fail for the initialisation's sake, not the wiring's."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not bool(p.any()):
                p.add_(0.1 * torch.randn(p.shape, generator=generator))


def check_every_model(name, tmp_path, onnx=True):
    """Build at a small size, one training step (the loss dict the class declares, a finite
    backward giving every trainable parameter a nonzero gradient once zero-initialised gates are
    perturbed), the eval shape, the saved-model
    round trip (identical logits), for a context model explain, and (``onnx``) ONNX export with
    onnxruntime giving the same outputs."""
    model = small(name).train()
    perturb_zero_initialised(model)
    x, y = torch.randn(2, 3, *SIZE), torch.randint(0, 4, (2, *SIZE))
    losses = model(x, y)
    expected = {"loss", "loss_seg", *type(model).loss_terms} | ({"loss_aux"} if model.aux_head is not None else set())
    assert set(losses) == expected
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert not dead, f"parameters whose gradient is missing or exactly zero: {dead[:6]}"

    model.eval()
    for m in model.modules():  # BN statistics that differ from the defaults must round-trip
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        logits = model(x[:1])
    assert logits.shape == (1, 4, *SIZE) and torch.isfinite(logits).all()

    cs.save_pretrained(model, tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(cs.load(tmp_path / "saved")(x[:1]), logits)

    if type(model).has_context_maps():
        pytest.importorskip("matplotlib")
        image = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
        e = cs.explain(model, image, pixels=[(3, 4)], out_dir=tmp_path / "explain")
        assert e["maps"] and all(m.kind in cs.heads.CONTEXT_MAP_KINDS for m in e["maps"])
        assert sorted(p.name for p in e["files"]) == sorted({f"explain_{m.group}.png" for m in e["maps"]})

    if onnx:
        check_onnx(model, x[:1], logits, tmp_path)


def check_onnx(model, x, logits, tmp_path):
    """``contextseg``'s ONNX export of ``model`` run by onnxruntime gives ``logits`` for ``x``; the
    batch axis is free, and so are height and width where the model says so
    (``onnx_any_size``): another batch and another size give the model's own logits there. The
    metadata holds the classes and the normalisation."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from contextseg.engine.onnx_export import export_onnx

    export_onnx(model, tmp_path / "m.onnx", tuple(x.shape[-2:]))
    ort_session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = ort_session.run(None, {"images": x.numpy()})[0]
    assert got.shape == logits.shape and abs(got - logits.numpy()).max() < 1e-3
    meta = ort_session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == [str(k) for k in range(model.num_classes)] and len(json.loads(meta["mean"])) == 3
    any_size = json.loads(meta["input"])["height"] is None
    assert any_size == (type(model).onnx_any_size and model.tied_input_size() is None)
    other = torch.randn(2, 3, *((x.shape[-2] + 16, x.shape[-1] - 16) if any_size else x.shape[-2:]))
    with torch.no_grad():
        expected = model(other).numpy()
    assert abs(ort_session.run(None, {"images": other.numpy()})[0] - expected).max() < 1e-3


@pytest.fixture
def every_model_checks():
    """``check(name, tmp_path)``: every check a registered model must pass."""
    return check_every_model


@pytest.fixture
def onnx_check():
    return check_onnx


@pytest.fixture
def small_model():
    return small


@pytest.fixture
def perturb_zero_gates():
    """``perturb(model)``: :func:`perturb_zero_initialised`."""
    return perturb_zero_initialised
