"""Every registered model: shapes at odd sizes, the train-mode loss dict, gradients everywhere."""

import pytest
import torch

import contextseg as cs

def small_model(name, num_classes=5, size=(65, 97), **kw):
    """Any registered model at a small size: its own ``small_options`` say what it needs."""
    cls = cs.models.get_model_class(name)
    return cs.create_model(name, num_classes=num_classes, backbone="resnet18d", **{**cls.small_options(size), **kw})


def test_list_models_has_the_baselines():
    names = cs.list_models()
    assert names == sorted(names)
    assert {"fcn", "pspnet", "deeplabv3", "deeplabv3plus"} <= set(names)


@pytest.mark.parametrize("name", cs.list_models())
def test_eval_forward_shape_and_dtype(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, 65, 97) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.num_classes == 5 and model.backbone is not None and model.decode_head is not None


@pytest.mark.parametrize("name", cs.list_models())
def test_train_loss_dict_and_backward_reaches_every_parameter(name, perturb_zero_gates):
    torch.manual_seed(0)
    model = small_model(name).train()
    # timm zero-initialises each residual block's last BN gamma and the attention papers their gate
    # (CCNet's gamma), which block gradients behind them at step 0: perturb every all-zero
    # parameter so that only truly unreachable parameters get no gradient.
    perturb_zero_gates(model)
    x = torch.randn(2, 3, 65, 97)
    y = torch.randint(0, 5, (2, 65, 97))
    y[:, :5] = 255
    losses = model(x, y)
    expected = {"loss", "loss_seg"} | ({"loss_aux"} if model.aux_head is not None else set())
    expected |= set(type(model).loss_terms)
    assert set(losses) == expected
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    parts = sum(v for k, v in losses.items() if k != "loss")
    assert torch.allclose(losses["loss"], parts)
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached: {missing[:5]}"


def test_aux_head_off_and_weights():
    model = small_model("fcn", aux_head=False)
    assert model.aux_head is None
    losses = model.train()(torch.randn(2, 3, 33, 33), torch.randint(0, 5, (2, 33, 33)))
    assert set(losses) == {"loss", "loss_seg"}
    model = small_model("fcn", aux_weight=0.0)
    losses = model.train()(torch.randn(2, 3, 33, 33), torch.randint(0, 5, (2, 33, 33)))
    assert losses["loss_aux"].item() == 0.0


def test_create_model_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        cs.create_model("nope", num_classes=3)
    with pytest.raises(ValueError, match="unknown option.*colour.*accepts"):
        cs.create_model("fcn", num_classes=3, backbone="resnet18d", colour=1)


def test_bad_input_shape_has_a_clear_error():
    model = small_model("fcn").eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 65, 97))


def test_predict_returns_labels():
    model = small_model("deeplabv3plus")
    labels = model.predict(torch.randn(1, 3, 40, 50))
    assert labels.shape == (1, 40, 50) and labels.dtype == torch.int64
    assert model.training  # predict restores the mode
