"""One test for every registered model: registering a model (with its ``loss_terms`` and
``small_options`` declared on the class) is all it takes to be covered.

Build at a small size, one training step (the loss dict the class declares, a finite backward),
the eval shape, the saved-model round trip (identical logits) and ONNX export (equal outputs)."""

import pytest
import torch

import contextseg as cs

SIZE = (48, 64)


def small(name):
    torch.manual_seed(0)
    options = cs.models.get_model_class(name).small_options(SIZE)
    return cs.create_model(name, num_classes=4, backbone="resnet18d", channels=16, **options)


@pytest.mark.parametrize("name", cs.list_models())
def test_build_train_step_eval_and_round_trips(name, tmp_path):
    model = small(name).train()
    x, y = torch.randn(2, 3, *SIZE), torch.randint(0, 4, (2, *SIZE))
    losses = model(x, y)
    expected = {"loss", "loss_seg", *type(model).loss_terms} | ({"loss_aux"} if model.aux_head is not None else set())
    assert set(losses) == expected
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()
    for m in model.modules():  # BN statistics that differ from the defaults must round-trip
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        logits = model(x[:1])
    assert logits.shape == (1, 4, *SIZE) and torch.isfinite(logits).all()

    cs.save_pretrained(model, tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(cs.from_pretrained(tmp_path / "saved")(x[:1]), logits)

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.onnx.export(model, (x[:1],), str(tmp_path / "m.onnx"), input_names=["images"], output_names=["logits"], dynamo=True, external_data=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {"images": x[:1].numpy()})[0]
    assert got.shape == logits.shape and abs(got - logits.numpy()).max() < 1e-3
