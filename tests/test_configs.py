"""Every shipped recipe loads, names real models/datasets/options, and its file name tells the truth."""

import re
from pathlib import Path

import pytest
import torch

import contextseg as cs
from contextseg.engine.builders import build_model
from contextseg.data import DATASETS
from contextseg.engine.config import default_config_path, load_config
from contextseg.models import get_model_class

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*/*.yaml"))
RECIPE = re.compile(r"^(?P<method>[a-z0-9]+)_(?P<bb>[a-z0-9]+)_(?P<gpus>\d+)x(?P<per>\d+)_(?P<iters>\d+)k_(?P<ds>[a-z0-9_]+)_(?P<h>\d+)x(?P<w>\d+)$")


def test_there_are_recipes_for_every_model():
    methods = {p.parent.name for p in CONFIGS}
    assert set(cs.list_models()) <= methods
    for name in cs.list_models():
        assert (ROOT / "configs" / name / f"{name}_r18_synthetic.yaml").is_file()


@pytest.mark.parametrize("path", CONFIGS + [default_config_path()], ids=lambda p: p.stem)
def test_config_is_valid(path):
    cfg = load_config(path)
    cls = get_model_class(cfg.model["name"])
    unknown = set(cfg.model) - {"name"} - set(cls.options())
    assert not unknown, f"{path.name}: unknown model options {unknown}"
    assert cfg.data.name in DATASETS
    if path.parent.name in cs.list_models():
        assert cfg.model["name"] == path.parent.name


@pytest.mark.parametrize("path", [p for p in CONFIGS if RECIPE.match(p.stem)], ids=lambda p: p.stem)
def test_recipe_name_states_batch_schedule_dataset_and_crop(path):
    m = RECIPE.match(path.stem)
    cfg = load_config(path)
    assert cfg.model["name"] == m["method"]
    assert cfg.train.batch_size == int(m["gpus"]) * int(m["per"])
    assert cfg.train.max_iters == int(m["iters"]) * 1000
    assert cfg.data.name == m["ds"]
    assert cfg.data.crop_size == [int(m["h"]), int(m["w"])]
    if cfg.model["name"] == "cpnet":  # the prior follows from the crop (stated once) and windows of it
        assert "prior_size" not in cfg.model and cfg.evaluate.mode == "slide"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*/*_synthetic.yaml")), ids=lambda p: p.stem)
def test_small_recipe_builds_and_runs_at_its_crop(path):
    cfg = load_config(path)
    model = build_model(cfg, 9).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *cfg.data.crop_size))
    assert out.shape == (1, 9, *cfg.data.crop_size)
