"""One test for every registered model: registering a model (with its ``loss_terms`` and
``small_options`` declared on the class) is all it takes to be covered (the checks live in
``conftest.py``, shared with the toy-method test)."""

import pytest

import contextseg as cs


@pytest.mark.parametrize("name", cs.list_models())
def test_build_train_step_eval_round_trips_and_explain(name, tmp_path, every_model_checks):
    every_model_checks(name, tmp_path)
