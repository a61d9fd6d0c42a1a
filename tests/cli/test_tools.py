"""bench, export and the data tools through the command line."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contextseg.cli.main import main
from contextseg.data import build_dataset


@pytest.mark.slow
def test_bench_reports_params_flops_latency_memory(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "fcn,cpnet", "--backbone", "resnet18d", "--num-classes", "5", "--size", "64", "64", "--repeats", "1", "--precision", "fp32", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["fcn", "cpnet"]
    fcn = rows[0]
    expected_params = sum(p.numel() for p in __import__("contextseg").create_model("fcn", num_classes=5, backbone="resnet18d").parameters())
    assert fcn["params_M"] == pytest.approx(expected_params / 1e6)
    assert fcn["GFLOPs"] > 0.5 and fcn["latency_ms"] > 0 and fcn["peak_mem_MiB"] > 0
    printed = capsys.readouterr().out.splitlines()  # a header saying what was measured, then one row per model
    assert printed[0].startswith("inference on cpu, batch 1, 64x64, fp32") and printed[1].split()[:2] == ["model", "params"]
    assert [line.split()[0] for line in printed[2:4]] == ["fcn", "cpnet"]
    assert main(["bench", "--models", "nope"]) == 2
    # a model that fails inside the per-model subprocess is an error, not a hang
    assert main(["bench", "--models", "fcn", "--backbone", "resnet5000", "--repeats", "1"]) == 2
    assert "resnet5000" in capsys.readouterr().err


def _train_tiny_fcn(tmp_path):
    """A 2-iteration FCN on 32x64 synthetic scenes: ``tmp_path / "run" / "last.pt"``."""
    cfg = {
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 16, "num_convs": 1, "aux_head": False},
        "data": {"name": "synthetic", "kwargs": {"size": [32, 64], "length": 4}, "crop_size": [32, 64], "num_workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "eval_interval": 2, "work_dir": str(tmp_path / "run")},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0


@pytest.mark.slow  # an ONNX export and onnxruntime: the slow tier
def test_export_onnx_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    _train_tiny_fcn(tmp_path)
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    from contextseg.engine.checkpoints.saved_model import load_checkpoint_model

    model, _, _ = load_checkpoint_model(str(tmp_path / "run" / "last.pt"), torch.device("cpu"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 64)).astype(np.float32)
    ort_session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = ort_session.run(None, {ort_session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 9, 32, 64) and np.abs(got - ref).max() < 1e-4


def test_data_check_lists_every_problem(tmp_path, capsys):
    root = tmp_path / "folder"
    for split in ("train",):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "train" / "x.png")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(root / "masks" / "train" / "x.png")  # 7 is no class
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "train" / "y.png")  # no mask
    assert main(["data", "check", "folder", str(root)]) == 1
    out = capsys.readouterr()
    assert "x.png" in out.out and "y.png" in out.out and "2 problem(s)" in out.err


def test_export_synthetic_roundtrips_through_the_folder_dataset(tmp_path):
    assert main(["data", "export-synthetic", str(tmp_path / "s"), "--splits", "val", "--size", "32", "64", "--length", "3", "--seed", "5"]) == 0
    folder = build_dataset("folder", tmp_path / "s", "val")
    synth = build_dataset("synthetic", None, "val", size=(32, 64), length=3, seed=5)
    assert len(folder) == 3 and folder.classes == synth.classes
    for i in range(3):
        assert torch.equal(folder[i][0], synth[i][0]) and torch.equal(folder[i][1], synth[i][1])


def test_export_synthetic_writes_a_split_named_twice_once(tmp_path, capsys):
    assert main(["data", "export-synthetic", str(tmp_path / "s"), "--splits", "val, val,", "--size", "32", "64", "--length", "2"]) == 0
    assert "wrote synthetic splits val to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s" / "images").iterdir()) == ["val"]


def test_data_prepare_cityscapes_through_the_cli(tmp_path, capsys):
    city = tmp_path / "gtFine" / "train" / "aachen"
    city.mkdir(parents=True)
    Image.fromarray(np.array([[7, 26], [0, 33]], np.uint8)).save(city / "a_000000_000019_gtFine_labelIds.png")
    assert main(["data", "prepare", "cityscapes", str(tmp_path)]) == 0
    train_ids = np.array(Image.open(city / "a_000000_000019_gtFine_labelTrainIds.png"))
    assert train_ids.tolist() == [[0, 13], [255, 18]]  # road, car, unlabeled, bicycle


def test_bench_compile_and_channels_last_reach_the_model(monkeypatch):
    """--compile goes through torch.compile (spied) and --channels-last feeds NHWC input and
    weights; FLOPs are counted on the plain module either way."""
    import torch

    from contextseg.engine import measure as bench

    seen = {}
    real_build = bench.build_for_input

    def build(*args):
        model = real_build(*args)
        model.register_forward_pre_hook(lambda m, a: seen.setdefault("nhwc", a[0].is_contiguous(memory_format=torch.channels_last)) and None)
        return model

    monkeypatch.setattr(bench, "build_for_input", build)
    monkeypatch.setattr(torch, "compile", lambda m, **kw: seen.setdefault("compiled", m) or m)
    row = bench.bench_one("fcn", "resnet18d", 3, (32, 32), 2, 1, "cpu", "fp32", False, compile=True, channels_last=True)
    assert seen["nhwc"] and "compiled" in seen and row["compile"] and row["channels_last"] and row["batch"] == 2
    assert seen["compiled"].backbone.body.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_bench_times_inference_in_eval_mode_and_training_in_train_mode(monkeypatch):
    """Inference is timed as a user runs it (eval: running BatchNorm statistics, no dropout), so
    DeepLabV3's image pooling works at batch 1; a training step runs in train mode."""
    from contextseg.engine import measure as bench

    modes = []
    real_build = bench.build_for_input

    def build(*args):
        model = real_build(*args)
        model.register_forward_pre_hook(lambda m, a: modes.append(m.training) and None)
        return model

    monkeypatch.setattr(bench, "build_for_input", build)
    bench.bench_one("deeplabv3", "resnet18d", 3, (32, 32), 1, 1, "cpu", "fp32", False)
    assert modes[:2] == [False, False]
    modes.clear()
    bench.bench_one("fcn", "resnet18d", 3, (32, 32), 2, 1, "cpu", "fp32", True)
    assert modes[:2] == [True, True]


def test_data_check_of_a_missing_root_is_bad_input(tmp_path, capsys):
    """A root that is not a folder is a wrong argument (exit 2, one line naming it and the layout);
    exit 1 stays for a dataset that exists and has problems."""
    assert main(["data", "check", "camvid", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "annot" in err and len(err.strip().splitlines()) == 1



def test_export_never_replaces_what_it_did_not_write(tmp_path, capsys):
    """Data that must not be lost: export into an existing saved model needs --overwrite; into a folder that
    holds anything else (a run folder) it is refused even with --overwrite; an existing .onnx file
    needs --overwrite. Every refusal is exit 2 with nothing on disk changed."""
    _train_tiny_fcn(tmp_path)
    ckpt = str(tmp_path / "run" / "last.pt")
    snapshot = lambda folder: {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}  # noqa: E731

    assert main(["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", str(tmp_path / "saved")]) == 0
    before = snapshot(tmp_path / "saved")  # each save has its own id: a replacement shows
    capsys.readouterr()
    assert main(["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", str(tmp_path / "saved")]) == 2
    assert "--overwrite" in capsys.readouterr().err and snapshot(tmp_path / "saved") == before
    assert main(["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", str(tmp_path / "saved"), "--overwrite"]) == 0
    assert snapshot(tmp_path / "saved")["config.json"] != before["config.json"]

    run_before = snapshot(tmp_path / "run")
    assert main(["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", str(tmp_path / "run"), "--overwrite"]) == 2
    assert "other files" in capsys.readouterr().err and snapshot(tmp_path / "run") == run_before

    foreign = tmp_path / "foreign"  # a folder with another tool's config.json is no saved model of contextseg's
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "bert"}')
    capsys.readouterr()
    assert main(["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", str(foreign), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "not written by contextseg" in err and "holds a saved model" not in err
    assert (foreign / "config.json").read_text() == '{"model_type": "bert"}' and not (foreign / "model.safetensors").exists()

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not mine")
    for flags in ([], ["--overwrite"]):  # a file contextseg did not write: never replaced
        assert main(["export", "--checkpoint", ckpt, "--out", str(onnx), *flags]) == 2
        assert "not written by contextseg" in capsys.readouterr().err and onnx.read_bytes() == b"not mine"


def test_export_synthetic_never_writes_into_a_dataset_and_validates_first(tmp_path, capsys):
    """Into a folder that is not empty only with --overwrite; invalid arguments fail before any
    file is written (they used to replace classes.txt and palette.txt first)."""
    data = tmp_path / "mine"
    data.mkdir()
    (data / "classes.txt").write_text("cat\ndog\n")
    assert main(["data", "export-synthetic", str(data), "--splits", "val", "--size", "32", "64", "--length", "2"]) == 2
    assert "not empty" in capsys.readouterr().err and (data / "classes.txt").read_text() == "cat\ndog\n"
    assert main(["data", "export-synthetic", str(data), "--splits", "nope", "--size", "32", "64", "--overwrite"]) == 2
    assert (data / "classes.txt").read_text() == "cat\ndog\n" and sorted(p.name for p in data.iterdir()) == ["classes.txt"]
    assert main(["data", "export-synthetic", str(tmp_path / "new"), "--splits", "val", "--size", "8", "8"]) == 2
    assert not (tmp_path / "new").exists()
    assert main(["data", "export-synthetic", str(data), "--splits", "val", "--size", "32", "64", "--length", "2", "--overwrite"]) == 0
    assert (data / "classes.txt").read_text() != "cat\ndog\n" and len(list((data / "images" / "val").iterdir())) == 2
