"""build_model: CPNet's prior size is stated once, by the crop."""

import numpy as np
import pytest
from PIL import Image

from contextseg.engine.builders import build_model, build_train_dataset, feature_size, size_warnings
from contextseg.engine.config import Config, ConfigError


def cpnet_config(**model):
    return Config.from_dict({
        "model": {"name": "cpnet", "backbone": "resnet18d", "output_stride": 8, "prior_channels": 16, "channels": 16, **model},
        "data": {"name": "synthetic", "crop_size": [60, 84]},
    })


def test_prior_size_is_derived_from_the_crop():
    model = build_model(cpnet_config(), 9)
    assert model.decode_head.prior_size == (8, 11) == feature_size([60, 84], 8)  # ceil(60/8), ceil(84/8)
    assert build_model(cpnet_config(output_stride=16), 9).decode_head.prior_size == (4, 6)


def test_a_prior_size_that_contradicts_the_crop_is_refused_naming_both():
    assert build_model(cpnet_config(prior_size=[8, 11]), 9).decode_head.prior_size == (8, 11)
    with pytest.raises(ConfigError, match=r"model.prior_size=\[8, 10\].*crop_size=\[60, 84\].*\[8, 11\]"):
        build_model(cpnet_config(prior_size=[8, 10]), 9)


def test_size_warnings_for_tiny_images_and_a_crop_larger_than_every_image(tmp_path):
    def warnings_for(data):
        cfg = Config.from_dict({"model": {"name": "fcn"}, "data": {"ratio_range": [0.5, 2.0], **data}})
        return size_warnings(cfg, build_train_dataset(cfg))

    assert warnings_for({"name": "synthetic", "kwargs": {"size": [64, 96], "length": 2}, "crop_size": [64, 96]}) == []
    big_crop = warnings_for({"name": "synthetic", "kwargs": {"size": [64, 96], "length": 2}, "crop_size": [256, 512]})
    assert len(big_crop) == 1 and "256x512 is larger than every training image" in big_crop[0] and "128x192" in big_crop[0]
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\n")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "images" / "train" / "dot.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(root / "masks" / "train" / "dot.png")
    tiny = warnings_for({"name": "folder", "root": str(root), "crop_size": [32, 32]})
    assert any("smaller than 8 pixels (e.g. 1x1)" in w for w in tiny)
