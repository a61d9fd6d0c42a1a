"""The Python API: cs.load / model.predict / cs.save_pretrained / cs.from_pretrained."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import contextseg as cs
from contextseg.cli.main import main
from contextseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny FCN trained for two iterations on synthetic scenes whose test scale is not its input size."""
    root = tmp_path_factory.mktemp("api")
    cfg = {
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 16, "aux_channels": 8},
        "data": {"name": "synthetic", "kwargs": {"size": [40, 64], "length": 4}, "base_size": [48, 30], "crop_size": [30, 48], "num_workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "eval_interval": 2, "work_dir": str(root / "run")},
        "evaluate": {"flip": True},
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "c.yaml")]) == 0
    photo = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(photo).save(root / "photo.png")
    return root


def test_load_carries_what_predict_needs(trained):
    model = cs.load(trained / "run" / "last.pt")
    assert not model.training and model.meta["classes"][0] == "sky" and len(model.meta["palette"]) == 9
    assert model.meta["base_size"] == [48, 30] and model.meta["inference"]["flip"] is True
    assert model.meta["mean"] == list(IMAGENET_MEAN) and model.meta["std"] == list(IMAGENET_STD)


def test_predict_on_every_input_type_equals_the_cli(trained, tmp_path):
    assert main(["predict", str(trained / "photo.png"), "--checkpoint", str(trained / "run" / "last.pt"), "--out", str(tmp_path)]) == 0
    cli_labels = torch.from_numpy(np.asarray(Image.open(tmp_path / "photo.png")).astype(np.int64))
    model = cs.load(trained / "run" / "last.pt")
    photo = np.asarray(Image.open(trained / "photo.png"))
    for image in (str(trained / "photo.png"), trained / "photo.png", Image.open(trained / "photo.png"), photo):
        labels = model.predict(image)
        assert labels.shape == (37, 53) and labels.dtype == torch.int64
        assert torch.equal(labels, cli_labels), type(image)
    assert [tuple(x.shape) for x in model.predict([photo, photo[:20]])] == [(37, 53), (20, 53)]
    # a normalised tensor is taken as it is (no test-scale resize), single or batch
    tensor = (torch.from_numpy(photo).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    single = model.predict(tensor)
    batch = model.predict(torch.stack([tensor, tensor]))
    assert single.shape == (37, 53) and batch.shape == (2, 37, 53) and torch.equal(batch[0], single)
    with torch.no_grad():
        probs = (model(tensor[None]).softmax(1) + model(tensor[None].flip(-1)).flip(-1).softmax(1))
    assert torch.equal(single, probs.argmax(1)[0])  # the model's own settings: flip on
    with pytest.raises(ValueError, match="uint8 array"):
        model.predict(np.zeros((5, 6, 2), np.uint8))  # two channels: neither grey nor colour (5 rows: not channels first)


def test_save_pretrained_writes_what_rebuilds_the_model(tmp_path):
    # the identical-logits round trip of every model lives in tests/models/test_every_model.py
    model = cs.create_model("cpnet", num_classes=4, backbone="resnet18d", prior_size=(5, 7), prior_channels=8, channels=16)
    model.meta.update(classes=["a", "b", "c", "d"], palette=[[0, 0, 0]] * 4)
    cs.save_pretrained(model, tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model"] == {"name": "cpnet", "num_classes": 4, "backbone": "resnet18d", "prior_size": [5, 7], "prior_channels": 8, "channels": 16}
    assert config["classes"] == ["a", "b", "c", "d"] and cs.load(tmp_path / "saved").meta["classes"] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="create_model"):
        cs.save_pretrained(cs.models.FCN(num_classes=2, backbone="resnet18d"), tmp_path / "other")


def test_export_safetensors_then_from_pretrained(trained, tmp_path):
    assert main(["export", "--checkpoint", str(trained / "run" / "last.pt"), "--format", "safetensors", "--out", str(tmp_path / "m")]) == 0
    saved = cs.from_pretrained(tmp_path / "m")
    original = cs.load(trained / "run" / "last.pt")
    photo = np.asarray(Image.open(trained / "photo.png"))
    assert torch.equal(saved.predict(photo), original.predict(photo))
    assert saved.meta["base_size"] == [48, 30]


def test_from_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist .neither a local folder nor a Hub repository id"):
        cs.from_pretrained(tmp_path / "nothing" / "here" / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors"):
        cs.from_pretrained(tmp_path / "empty")


def test_eval_of_a_saved_model_scores_as_its_checkpoint_did(trained, tmp_path, capsys):
    """A saved model carries the dataset, test scale (48x30 here, not the dataset's own 64x40) and
    inference settings it was scored with; `eval` on the folder uses them, and says which."""
    ckpt = trained / "run" / "last.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out", str(tmp_path / "saved")]) == 0
    capsys.readouterr()
    results = {}
    for name, source in (("checkpoint", ckpt), ("saved", tmp_path / "saved")):
        assert main(["eval", "--checkpoint", str(source), "--json", str(tmp_path / f"{name}.json")]) == 0
        header = capsys.readouterr().out.splitlines()[0]
        assert "on synthetic/val (4 images) at test scale 48x30" in header and "mode whole" in header and "flip True" in header, header
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert results["saved"]["mIoU"] == results["checkpoint"]["mIoU"]
    assert results["saved"]["confusion"] == results["checkpoint"]["confusion"]


def _tiny(seed, classes):
    torch.manual_seed(seed)
    model = cs.create_model("fcn", num_classes=len(classes), backbone="resnet18d", output_stride=32, channels=8, aux_channels=8)
    model.meta.update(classes=classes, palette=[[k, k, k] for k in range(len(classes))])
    return model


def test_a_save_killed_between_its_two_files_loads_as_the_new_model(tmp_path, monkeypatch, caplog):
    """The weights file is the unit: it carries its config. A kill after the new weights' rename but
    before config.json's leaves the old config.json beside them, and loading gives the new model
    whole (its classes, its weights), never new weights read with the old config."""
    from contextseg.engine.checkpoints import saved_model

    old, new = _tiny(0, ["a", "b", "c"]), _tiny(1, ["x", "y", "z"])
    cs.save_pretrained(old, tmp_path / "m")
    stale = (tmp_path / "m" / "config.json").read_text()

    def killed(path, data):
        raise KeyboardInterrupt  # SIGINT between the two renames

    monkeypatch.setattr(saved_model, "write_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        cs.save_pretrained(new, tmp_path / "m")
    assert (tmp_path / "m" / "config.json").read_text() == stale  # the old config.json is still there
    loaded = cs.from_pretrained(tmp_path / "m")
    assert loaded.meta["classes"] == ["x", "y", "z"] and "does not belong" in caplog.text
    for key, value in new.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "save_id" not in loaded.meta


def test_config_json_of_the_same_save_is_used_with_its_hand_edits(tmp_path, caplog):
    cs.save_pretrained(_tiny(0, ["a", "b", "c"]), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["classes"] = ["road", "car", "sky"]  # a user renames the classes
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    assert cs.from_pretrained(tmp_path / "m").meta["classes"] == ["road", "car", "sky"] and "does not belong" not in caplog.text
    other = tmp_path / "other"
    cs.save_pretrained(_tiny(1, ["p", "q", "r"]), other)
    (tmp_path / "m" / "config.json").write_text((other / "config.json").read_text())  # another model's config.json copied in
    assert cs.from_pretrained(tmp_path / "m").meta["classes"] == ["a", "b", "c"] and "does not belong" in caplog.text


@pytest.mark.parametrize("folder", ["..", "."])
def test_a_saved_model_named_by_dots_is_evaluated_under_its_folders_name(tmp_path, monkeypatch, folder):
    """``--checkpoint ..`` or ``.``: the config read from a saved model is named after the folder
    itself (a run name is one plain folder name; ``..`` is not one)."""
    from contextseg.engine.checkpoints.saved_model import load_checkpoint_model

    cs.save_pretrained(_tiny(0, ["a", "b", "c"]), tmp_path / "saved")
    (tmp_path / "saved" / "inner").mkdir()
    monkeypatch.chdir(tmp_path / "saved" / ("inner" if folder == ".." else ""))
    _, cfg, _ = load_checkpoint_model(folder)
    assert cfg.name == "saved"


def test_a_run_folder_stands_for_its_best_else_its_last_checkpoint(tmp_path):
    """--checkpoint RUN_FOLDER (explain, eval, predict, the demo, cs.load): its best.pt, else its
    last.pt (a run stopped before its first evaluation); a saved-model folder stays itself."""
    from contextseg.engine.checkpoints.saved_model import run_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("# written by contextseg\n")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint yet"):
        run_checkpoint(run)
    (run / "last.pt").write_bytes(b"")
    assert run_checkpoint(run) == run / "last.pt"
    (run / "best.pt").write_bytes(b"")
    assert run_checkpoint(run) == run / "best.pt"
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text("{}")
    (saved / "last.pt").write_bytes(b"")
    assert run_checkpoint(saved) == saved and run_checkpoint(run / "last.pt") == run / "last.pt"
