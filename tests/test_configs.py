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
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name != "_base_")  # _base_/: shared sections, not recipes
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


@pytest.mark.slow
def test_cpnet_1024_recipe_trains_a_step_at_prior_128_without_an_n_by_n_tensor():
    """The 1024x1024 Cityscapes recipe at a reduced width (ResNet-18-D, 16-channel head): prior
    128x128 derived from the crop, one training step, and nothing autograd saves is N x N."""
    cfg = load_config(ROOT / "configs" / "cpnet" / "cpnet_r101d_4x2_80k_cityscapes_1024x1024.yaml",
                      ["model.backbone=resnet18d", "model.pretrained_backbone=null", "model.channels=16", "model.prior_channels=16", "model.aux_channels=16"])
    torch.manual_seed(0)
    model = build_model(cfg, 19).train()
    assert model.decode_head.prior_size == (128, 128) and model.decode_head.context_prior.fused
    n = 128 * 128
    x, y = torch.randn(1, 3, 1024, 1024), torch.randint(0, 19, (1, 1024, 1024))
    largest = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: largest.append(t.numel()) or t, lambda t: t):
        losses = model(x, y)
    losses["loss"].backward()
    assert set(losses) == {"loss", "loss_seg", "loss_aux", "loss_affinity"} and torch.isfinite(losses["loss"])
    assert max(largest) < n * n / 10  # the largest is the full-size logits; the plain form saves several (1, N, N) maps
    assert model.decode_head.context_prior.prior_conv[0].weight.grad.abs().sum() > 0


def test_every_config_resolves_to_the_values_of_its_record(records):
    """``tests/engine/data/resolved/<method>/<config>.json`` holds each shipped config resolved (one
    file per config, written by ``python tests/records.py resolved``): a change to a shared base or
    to the config code that moves any recipe's values fails here, naming the recipes it moved."""
    import json

    changed, new = [], []
    for config in [*CONFIGS, None]:
        path = records.resolved_record_path(config)
        name = "the embedded default" if config is None else str(config.relative_to(ROOT))
        if not path.is_file():
            new.append(name)
        elif json.loads(path.read_text()) != load_config(config).to_dict():
            changed.append(name)
    assert not changed, (f"configs whose resolved values changed: {changed}; if on purpose, "
                         f"`{records.COMMAND} resolved --update CONFIG` rewrites a record")
    assert not new, f"configs without a resolved record: {new}; `{records.COMMAND} resolved` writes them"
    recorded = {p.relative_to(records.RESOLVED).as_posix() for p in records.RESOLVED.rglob("*.json")}
    expected = {records.resolved_record_path(c).relative_to(records.RESOLVED).as_posix() for c in [*CONFIGS, None]}
    assert recorded == expected, f"records of configs that no longer exist: {sorted(recorded - expected)}"


def test_the_record_generator_writes_only_missing_records_unless_told(tmp_path, monkeypatch, records):
    monkeypatch.setattr(records, "RESOLVED", tmp_path)
    config = CONFIGS[0]
    assert records.write_resolved([config], update=False) == [tmp_path / config.parent.name / f"{config.stem}.json"]
    path = records.resolved_record_path(config)
    path.write_text("{}\n")
    assert records.write_resolved([config], update=False) == [] and path.read_text() == "{}\n"  # kept
    assert records.write_resolved([config], update=True) == [path] and path.read_text() == records.dump(load_config(config).to_dict())
    with pytest.raises(SystemExit):  # rewriting every record at once would accept any change
        records.main(["resolved", "--update"])


def test_variants_are_a_few_lines():
    for path in CONFIGS:
        text = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        if "_base_:" in path.read_text():
            assert len(text) <= 12, f"{path.name} restates its base: {len(text)} lines"
