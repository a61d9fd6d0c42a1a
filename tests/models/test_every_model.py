"""One test for every registered model: registering a model (with its ``loss_terms`` and
``small_options`` declared on the class) is all it takes to be covered (the checks live in
``conftest.py``, shared with the toy-method test). ONNX export of every model is the slow tier's
(one model is exported in the fast tier by ``tests/cli/test_tools.py``, the toy method too)."""

import pytest
import torch

import contextseg as cs


@pytest.mark.parametrize("name", cs.list_models())
def test_build_train_step_eval_round_trips_and_explain(name, tmp_path, every_model_checks):
    every_model_checks(name, tmp_path, onnx=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", cs.list_models())
def test_onnx_export_runs_in_onnxruntime_with_the_same_outputs(name, tmp_path, small_model, onnx_check):
    model = small_model(name).eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        logits = model(x)
    onnx_check(model, x, logits, tmp_path)
