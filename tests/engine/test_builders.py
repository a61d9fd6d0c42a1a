"""build_model: CPNet's prior size is stated once, by the crop."""

import pytest

from contextseg.engine.builders import build_model, feature_size
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
