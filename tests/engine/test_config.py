import pytest
import yaml

from contextseg.engine.config import Config, ConfigError, apply_overrides, load_config


def write(tmp_path, data, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_overrides_parse_yaml_values_and_create_sections(tmp_path):
    p = write(tmp_path, {"model": {"name": "fcn"}, "train": {"max_iters": 100}})
    cfg = load_config(p, ["train.max_iters=20", "data.crop_size=[64, 96]", "model.backbone=resnet18d", "train.min_lr=1e-6", "evaluate.flip=true"])
    assert cfg.name == "exp"
    assert cfg.train.max_iters == 20 and cfg.train.min_lr == 1e-6 and cfg.evaluate.flip is True
    assert cfg.data.crop_size == [64, 96] and cfg.model == {"name": "fcn", "backbone": "resnet18d"}


def test_resolved_config_roundtrips(tmp_path):
    cfg = load_config(write(tmp_path, {"model": {"name": "fcn"}}), ["train.lr=0.02"])
    again = Config.from_dict(yaml.safe_load(cfg.dump()))
    assert again == cfg


@pytest.mark.parametrize(
    "data, match",
    [
        ({"model": {"name": "fcn"}, "train": {"max_itres": 3}}, "max_itres.*did you mean 'max_iters'"),
        ({"model": {"name": "fcn"}, "trian": {}}, "trian"),
        ({"model": {}}, "model.name"),
        ({"model": {"name": "fcn"}, "data": {"crop_size": [10]}}, "crop_size"),
        ({"model": {"name": "fcn"}, "train": {"precision": "fp8"}}, "precision"),
        ({"model": {"name": "fcn"}, "evaluate": {"mode": "tiles"}}, "mode"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, data, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, data))


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["max_iters"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_scientific_notation_is_a_float_and_types_are_checked(tmp_path):
    p = tmp_path / "sci.yaml"
    p.write_text("model: {name: fcn}\ntrain: {lr: 1e-3, weight_decay: 5e-4}\n")
    cfg = load_config(p)
    assert cfg.train.lr == 1e-3 and cfg.train.weight_decay == 5e-4
    with pytest.raises(ConfigError, match="train.max_iters must be int, got 'abc'"):
        load_config(p, ["train.max_iters=abc"])
    with pytest.raises(ConfigError, match="data.photometric must be bool"):
        load_config(p, ["data.photometric=3"])
