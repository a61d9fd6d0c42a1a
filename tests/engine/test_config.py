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


@pytest.mark.parametrize("override, match", [
    ("data.crop_size=[64, '64']", r"data.crop_size must be list\[int\], got \[64, '64'\]"),
    ("data.crop_size=[64.0, 64]", r"data.crop_size must be list\[int\]"),
    ("data.base_size=[true, 2]", r"data.base_size must be list\[int\] \| None"),
    ("data.ratio_range=[0.5, x]", r"data.ratio_range must be list\[float\]"),
    ("train.betas=[0.9, false]", r"train.betas must be list\[float\]"),
    ("evaluate.scales=[1.0, [2]]", r"evaluate.scales must be list\[float\]"),
    ("train.paramwise=[backbone]", r"train.paramwise must be list\[dict\]"),
])
def test_list_elements_are_type_checked(tmp_path, override, match):
    p = write(tmp_path, {"model": {"name": "fcn"}})
    with pytest.raises(ConfigError, match=match):
        load_config(p, [override])
    assert load_config(p, ["data.ratio_range=[1, 2]"]).data.ratio_range == [1, 2]  # an int is a float


def _write(path, text):
    path.write_text(text)
    return path


def test_base_inheritance_merges_mappings_replaces_values_and_lists(tmp_path):
    from contextseg.engine.config import load_config

    _write(tmp_path / "base.yaml", "name: base\nmodel: {name: fcn, backbone: resnet18d, channels: 64}\n"
           "data: {name: synthetic, crop_size: [64, 64], ratio_range: [0.5, 2.0]}\ntrain: {max_iters: 10, lr: 0.1}\n")
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel: {channels: 32}\ndata: {ratio_range: [1.0, 1.0]}\ntrain: {lr: 0.2}\n")
    cfg = load_config(child)
    assert cfg.model == {"name": "fcn", "backbone": "resnet18d", "channels": 32}  # merged key by key
    assert cfg.data.ratio_range == [1.0, 1.0] and cfg.data.crop_size == [64, 64]  # a list replaces
    assert cfg.train.lr == 0.2 and cfg.train.max_iters == 10
    assert cfg.name == "child"  # never the base's name


def test_base_delete_replaces_a_section_and_later_bases_win(tmp_path):
    from contextseg.engine.config import read_yaml

    _write(tmp_path / "a.yaml", "model: {name: fcn, channels: 64, aux_head: true}\ntrain: {lr: 0.1}\n")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "b.yaml", "train: {lr: 0.3, max_iters: 5}\n")
    child = _write(tmp_path / "c.yaml", "_base_: [a.yaml, sub/b.yaml]\nmodel: {_delete_: true, name: pspnet}\n")
    raw = read_yaml(child)
    assert raw["model"] == {"name": "pspnet"}  # the base's model section dropped, not merged
    assert raw["train"] == {"lr": 0.3, "max_iters": 5}  # the second base on top of the first


def test_base_errors_are_one_line_and_name_the_file(tmp_path):
    from contextseg.engine.config import ConfigError, read_yaml

    _write(tmp_path / "x.yaml", "_base_: y.yaml\n")
    _write(tmp_path / "y.yaml", "_base_: x.yaml\n")
    with pytest.raises(ConfigError, match=r"circle: .*x.yaml -> .*y.yaml -> .*x.yaml"):
        read_yaml(tmp_path / "x.yaml")
    cases = [("m.yaml", "_base_: missing.yaml\n", r"missing.yaml.*does not exist"),
             ("n.yaml", "_base_: {a: 1}\n", r"_base_ must be a file name or a list"),
             ("l.yaml", "- 1\n- 2\n", r"top level must be a mapping")]
    for name, text, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_yaml(_write(tmp_path / name, text))
    with pytest.raises(ConfigError, match=r"is a folder"):
        read_yaml(tmp_path)


def test_odd_base_files_and_delete_values_are_one_accurate_line(tmp_path):
    from contextseg.engine.config import MAX_BASE_DEPTH, read_yaml

    (tmp_path / "loop_a.yaml").symlink_to(tmp_path / "loop_b.yaml")
    (tmp_path / "loop_b.yaml").symlink_to(tmp_path / "loop_a.yaml")
    cases = [("s.yaml", "_base_: loop_a.yaml\n", r"loop_a.yaml.*cannot be resolved"),  # a symbolic link loop
             ("d.yaml", "_base_: /dev/zero\n", r"/dev/zero.*not a regular file"),  # a device: reading it never ends
             ("e.yaml", "_base_: ''\n", r"_base_ must be .*none empty"),
             ("f.yaml", "_base_: [a.yaml, '  ']\n", r"_base_ must be .*none empty"),
             ("g.yaml", "model: {_delete_: 'yes', name: fcn}\n_base_: h.yaml\n", r"model._delete_ must be true or false .*got 'yes'")]
    _write(tmp_path / "h.yaml", "model: {name: pspnet}\n")
    for name, text, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_yaml(_write(tmp_path / name, text))
    for k in range(MAX_BASE_DEPTH + 5):  # a very long chain: refused with its depth, not Python's recursion limit
        _write(tmp_path / f"c{k}.yaml", f"_base_: c{k + 1}.yaml\n")
    _write(tmp_path / f"c{MAX_BASE_DEPTH + 5}.yaml", "model: {name: fcn}\n")
    with pytest.raises(ConfigError, match=rf"more than {MAX_BASE_DEPTH} levels deep"):
        read_yaml(tmp_path / "c0.yaml")
    assert read_yaml(tmp_path / "c10.yaml")["model"] == {"name": "fcn"}  # a chain within the limit still reads


# -- numbers: every numeric key has a finite range, and out-of-range values are one line naming it --
HUGE = 10**23  # beyond every range, a float and a 64-bit integer


def _outside(bound):
    """Values just outside ``bound`` on each side (where a side exists), and a huge one."""
    step = 1 if bound.integer else 1e-3
    values = [HUGE, bound.high + step, bound.low - step if bound.low > -(2**62) else None]
    if bound.high_open:
        values.append(bound.high)
    if bound.low_open:
        values.append(bound.low)
    return [v for v in values if v is not None]


def test_every_numeric_field_has_a_finite_range_that_is_enforced(tmp_path):
    """Walks every field of the data/train/evaluate dataclasses whose type admits a number: each has
    a range with a finite upper bound in NUMBER_RANGES, and a value past either end is refused in
    one line naming the key, the value and the range."""
    import math

    from contextseg.engine.config import NUMBER_RANGES, numeric_fields

    p = write(tmp_path, {"model": {"name": "fcn"}})
    fields = numeric_fields()
    assert {"train.lr", "train.batch_size", "data.crop_size", "evaluate.scales", "train.ema"} <= set(fields)
    for key in fields:
        assert key in NUMBER_RANGES, f"{key} has no range in NUMBER_RANGES"
        bound = NUMBER_RANGES[key]
        assert math.isfinite(bound.high) and math.isfinite(bound.low) and bound.high <= 2**32, key
        for value in _outside(bound):
            if bound.count is not None:
                value = [value] * (bound.count or 1)
            with pytest.raises(ConfigError) as caught:
                load_config(p, [f"{key}={value}"])
            message = str(caught.value)
            assert "\n" not in message and f"{key}=" in message and "out of range: expected" in message, (key, value, message)
            assert str(HUGE) in message or value != HUGE, message
    assert load_config(p, ["train.lr=10", "train.batch_size=65536", "data.crop_size=[16384, 1]"]).train.lr == 10  # the ends are allowed


def test_every_numeric_model_option_has_a_finite_range_that_is_enforced(tmp_path):
    """Every keyword of every registered model whose type admits a number has a range (its own or
    its name pattern's); a huge or negative value of one is refused naming ``model.<option>``."""
    import math

    from contextseg.engine.config import model_option_bound
    from contextseg.models.registry import MODELS

    options = {"num_classes"}
    for cls in MODELS.values():
        for name, param in cls.options().items():
            if any(word in str(param.annotation) for word in ("int", "float")):
                options.add(name)
    assert {"channels", "aux_weight", "ohem_min_kept", "output_stride", "pool_scales", "prior_size"} <= options
    p = write(tmp_path, {"model": {"name": "fcn"}})
    for name in sorted(options):
        bound = model_option_bound(name)
        assert bound is not None and math.isfinite(bound.high), f"model option {name} has no range"
        for value in (HUGE, [HUGE, 1], -(10**6)):
            with pytest.raises(ConfigError, match=rf"model\.{name}=.* is out of range: expected .* in [\[(]"):
                load_config(p, [f"model.{name}={value}"])
    with pytest.raises(ConfigError, match=r"model\.my_option=.* is out of range"):  # an option of a user's own model: 64 bits
        load_config(p, [f"model.my_option={10**30}"])


@pytest.mark.parametrize("value, shown", [
    ("1" + "0" * 5000, "too long to be read"),  # Python refuses to convert more than 4300 digits
    ("0x" + "f" * 5000, "an integer of 6021 digits"),  # hexadecimal is converted, but cannot be printed
    ("1e400", "finite"),
    ("-" + "9" * 400, "an integer of 400 digits"),
])
def test_huge_numbers_anywhere_are_one_line_without_overflow(tmp_path, value, shown):
    """Integers too large for a float (OverflowError) or to print (ValueError) in any key, known or
    not (a dataset option, a paramwise rule, a list), end in one ConfigError naming the key."""
    p = write(tmp_path, {"model": {"name": "fcn"}})
    for key in ("train.lr", "train.batch_size", "data.kwargs.length", "data.crop_size", "evaluate.scales", "train.ema", "model.channels"):
        item = f"[{value}, 1]" if key in ("data.crop_size", "evaluate.scales") else value
        with pytest.raises(ConfigError) as caught:
            load_config(p, [f"{key}={item}"])
        message = str(caught.value)
        assert "\n" not in message and len(message) < 400 and shown in message and key.split(".")[-1] in message, (key, message)
    with pytest.raises(ConfigError) as caught:
        load_config(p, [f"train.paramwise=[{{pattern: 'a', lr_mult: {value}}}]"])
    assert "train.paramwise" in str(caught.value) and shown in str(caught.value) and len(str(caught.value)) < 400


# -- names: a config string used as a folder name stays one folder inside its parent ---------------
@pytest.mark.parametrize("key, value, problem", [
    ("name", "../../x", "path separator"),
    ("name", "/abs/path", "path separator"),
    ("name", "runs\\\\..\\\\x", "path separator"),
    ("name", "..", "parent"),
    ("name", ".", "parent"),
    ("name", "'   '", "empty"),
    ("name", '"a\\0b"', "NUL"),
    ("name", '"run\\x1b[2J"', "control or format character"),
    ("name", '"run\\nname"', "control or format character"),
    ("name", '"evil\\u202etxt.exe"', "control or format character"),
    ("name", "n" * 256, "longer than 255 bytes"),
    ("data.val_split", "../../etc", "path separator"),
    ("data.train_split", "..", "parent"),
])
def test_names_used_as_folders_stay_inside_their_parent(tmp_path, key, value, problem):
    p = write(tmp_path, {"model": {"name": "fcn"}})
    for extra in ([], [f"train.work_dir={tmp_path / 'anywhere'}"]):  # refused with or without an explicit work dir
        with pytest.raises(ConfigError) as caught:
            load_config(p, [f"{key}={value}", *extra])
        message = str(caught.value)
        assert "\n" not in message and f"{key}=" in message and "cannot be a folder name" in message and problem in message, message
        assert "\x1b" not in message and "\u202e" not in message and "\x00" not in message


def test_plain_names_are_kept_and_the_work_dir_may_be_any_folder(tmp_path):
    p = write(tmp_path, {"name": "città run-2 (β)", "model": {"name": "fcn"}})
    cfg = load_config(p)
    assert cfg.name == "città run-2 (β)" and cfg.work_dir == __import__("pathlib").Path("runs") / "città run-2 (β)"
    assert load_config(p, ["name=" + "n" * 255]).name == "n" * 255  # the longest file name is a name
    assert load_config(p, [f"train.work_dir={tmp_path / '..' / 'elsewhere'}"]).work_dir == tmp_path / ".." / "elsewhere"
    with pytest.raises(ConfigError, match=r"name must be text .*got \[1, 2\]"):
        load_config(p, ["name=[1, 2]"])
