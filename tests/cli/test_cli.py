"""The command line end to end: train on a 20-iteration config, then eval/predict/export from its checkpoint."""

import json
import subprocess
import sys

import numpy as np
import torch
import pytest
import yaml
from PIL import Image

from contextseg.cli.main import main

CONFIG = {
    "model": {"name": "deeplabv3plus", "backbone": "resnet18d", "output_stride": 32, "channels": 32, "c1_channels": 16},
    "data": {"name": "synthetic", "kwargs": {"size": [32, 64], "length": 8}, "crop_size": [32, 64], "num_workers": 0},
    "train": {"max_iters": 20, "batch_size": 4, "lr": 0.02, "log_interval": 5, "eval_interval": 10},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    rc = main(["train", str(config), f"train.work_dir={root / 'run'}"])
    assert rc == 0
    return root


def test_train_writes_checkpoints_and_logs(trained):
    run = trained / "run"
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_iters"] == 20
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["event"] == "val"] == [10, 20]
    assert all({"loss", "lr", "loss_seg"} <= set(r) for r in records if r["event"] == "train")


def test_eval_reads_the_checkpoint_alone(trained, capsys):
    out = trained / "res.json"
    assert main(["eval", "--checkpoint", str(trained / "run" / "last.pt"), "--json", str(out), "--flip", "--scales", "0.75,1.0"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "mIoU" in text and "sidewalk" in text
    assert "eval:" not in captured.err and "it/s" not in captured.err  # no progress bar when not on a terminal
    res = json.loads(out.read_text())
    assert len(res["IoU"]) == 9 and 0 <= res["mIoU"] <= 1


def test_eval_slide_mode(trained, capsys):
    assert main(["eval", "--checkpoint", str(trained / "run" / "last.pt"), "--mode", "slide", "evaluate.crop_size=[32, 48]"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_predict_writes_labels_and_overlays(trained):
    images = trained / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 255, (33, 50, 3), dtype=np.uint8)).save(images / "b.jpg")
    out = trained / "pred"
    assert main(["predict", "--checkpoint", str(trained / "run" / "best.pt"), str(images), "--out", str(out)]) == 0
    label = np.array(Image.open(out / "a.png"))
    assert label.shape == (40, 70) and label.max() < 9
    import contextseg as cs

    model = cs.load(trained / "run" / "best.pt")
    assert np.array_equal(label, model.predict(images / "a.png").numpy())  # the stored values are the class indices
    with Image.open(out / "a.png") as png:  # paletted: a viewer shows the class colours
        assert png.mode == "P"
        assert np.array_equal(np.array(png.convert("RGB"))[label == label.max()][0], model.meta["palette"][label.max()])
    overlay = np.array(Image.open(out / "b_overlay.png"))
    assert overlay.shape[0] >= 33 and overlay.shape[1] > 50  # the image, then a legend panel
    palette = torch.load(trained / "run" / "best.pt", weights_only=True)["palette"]
    legend = overlay[:, 50:].reshape(-1, 3)
    for k in np.unique(np.array(Image.open(out / "b.png"))):  # every class present has its swatch
        assert (legend == np.array(palette[k], np.uint8)).all(1).any(), k


def test_bad_inputs_give_clear_errors(trained, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["train", "train.max_itres=3"]) == 2
    assert "did you mean 'max_iters'" in capsys.readouterr().err


def test_print_config_shows_the_embedded_default(capsys):
    assert main(["train", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["name"] == "synthetic" and cfg["model"]["name"]


@pytest.mark.slow  # the installed console script builds every model: the slow tier
def test_console_entry_point_lists_models():
    out = subprocess.run([sys.executable, "-m", "contextseg", "models", "--backbone", "resnet18d", "--num-classes", "19"], capture_output=True, text=True, check=True).stdout
    import contextseg as cs

    for name in cs.list_models():  # every registered model, baselines and methods
        assert f"\n{name} " in out


def test_eval_mmseg_compat_resizes_without_antialiasing(trained, monkeypatch, capsys):
    from contextseg.engine import builders

    seen = []
    real = builders.build_eval_dataset

    def spy(*args, **kwargs):
        dataset = real(*args, **kwargs)
        seen.append(dataset.transforms.antialias)
        return dataset

    monkeypatch.setattr(builders, "build_eval_dataset", spy)
    checkpoint = str(trained / "run" / "last.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--mmseg-compat", "data.base_size=[48, 24]"]) == 0
    assert main(["eval", "--checkpoint", checkpoint, "data.base_size=[48, 24]"]) == 0
    assert seen == [False, True] and "mIoU" in capsys.readouterr().out


def test_a_bug_is_reported_as_a_bug_not_as_bad_input(monkeypatch, capsys, tmp_path):
    """Only contextseg's own checks become one-line exit-2 errors; an exception raised inside a
    library (here: a stand-in for numpy or torch failing) prints its traceback and says it is a bug."""
    from contextseg.cli import commands

    def broken_library(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # raised outside the package

    monkeypatch.setattr(commands, "load_config", broken_library)
    assert main(["train", "train.max_iters=1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "broadcast" in err and "this is a bug in contextseg" in err
    monkeypatch.setattr(commands, "load_config", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("index out of range in self")))
    assert main(["train", "train.max_iters=1"]) == 1
    assert "this is a bug in contextseg" in capsys.readouterr().err
    monkeypatch.undo()
    (tmp_path / "a_file").write_text("x")
    assert main(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "a_file")]) == 2  # bad input: one line
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "no images" in err


def test_version_is_the_package_metadata_everywhere(capsys):
    from importlib import metadata
    from pathlib import Path

    import contextseg

    installed = metadata.version("contextseg")
    assert contextseg.__version__ == installed
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"contextseg {installed}"
    changelog = (Path(__file__).resolve().parents[2] / "CHANGELOG.md").read_text()
    assert f"\n## {installed} - " in changelog  # the released version has its changelog entry
