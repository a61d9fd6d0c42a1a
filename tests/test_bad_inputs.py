"""Bad input, as a hostile but ordinary user gives it, through the real command line.

Every case runs ``contextseg ...`` (the console script's ``main``, in this process; the cases that
need a process of their own, such as a file-size limit, run in a subprocess) and checks the exit
code, that the message names the culprit, that there is no traceback, and that no input or
checkpoint changed (hashes before and after).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

TINY = {
    "name": "tiny",
    "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 8, "aux_channels": 8},
    "data": {"name": "synthetic", "kwargs": {"size": [32, 48], "length": 4}, "val_split": "val", "crop_size": [32, 48], "num_workers": 0},
    "train": {"max_iters": 1, "batch_size": 2, "lr": 0.01, "eval_interval": 1, "log_interval": 1},
}


def cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "contextseg", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def digest(paths) -> dict:
    out = {}
    for path in paths:
        path = Path(path)
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny trained checkpoint (fcn) and one of another model (cpnet), plus a few photos."""
    root = tmp_path_factory.mktemp("world")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    code, out = cli("train", config, f"train.work_dir={root / 'run'}")
    assert code == 0, out
    other = dict(TINY, model={"name": "cpnet", "backbone": "resnet18d", "output_stride": 32, "channels": 8, "prior_channels": 8, "aux_channels": 8})
    other_config = root / "other.yaml"
    other_config.write_text(yaml.safe_dump(other))
    code, out = cli("train", other_config, f"train.work_dir={root / 'other'}")
    assert code == 0, out
    photos = root / "photos"
    for sub in ("a", "b"):
        (photos / sub).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photos / sub / "frame.png")
    return {"root": root, "config": config, "ckpt": root / "run" / "last.pt", "cpnet": root / "other" / "last.pt", "photos": photos}


def check(code, out, expected_code, *names):
    assert code == expected_code, out
    assert "Traceback" not in out, out
    for name in names:
        assert str(name) in out, (name, out)


# -- predict never destroys data -----------------------------------------------------------------
@pytest.mark.slow  # end-to-end predict runs (~12 s each): the slow tier
def test_predict_refuses_an_output_inside_the_input_folder(world):
    before = digest([world["photos"], world["ckpt"]])
    for out in (world["photos"], world["photos"] / "a", world["photos"] / "preds"):
        code, text = cli("predict", world["photos"], "--checkpoint", world["ckpt"], "--out", out)
        check(code, text, 2, "inside the input folder")
    assert digest([world["photos"], world["ckpt"]]) == before


@pytest.mark.slow  # end-to-end predict runs (~12 s each): the slow tier
def test_predict_mirrors_folders_counts_and_never_overwrites(world, tmp_path):
    a, b = world["photos"] / "a" / "frame.png", world["photos"] / "b" / "frame.png"
    code, text = cli("predict", a, b, "--checkpoint", world["ckpt"], "--out", tmp_path / "out")
    check(code, text, 0, "wrote 2 label PNG(s)")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a/frame.png", "a/frame_overlay.png", "b/frame.png", "b/frame_overlay.png"]
    before = digest([tmp_path / "out"])
    code, text = cli("predict", a, b, "--checkpoint", world["ckpt"], "--out", tmp_path / "out")
    check(code, text, 2, "exist already", "--overwrite")
    assert digest([tmp_path / "out"]) == before
    code, text = cli("predict", a, b, "--checkpoint", world["ckpt"], "--out", tmp_path / "out", "--overwrite")
    check(code, text, 0, "wrote 2")


@pytest.mark.slow  # end-to-end predict runs (~12 s): the slow tier
def test_predict_overwrite_replaces_only_its_own_outputs(world, tmp_path):
    """--out in an input's own folder with --overwrite used to replace an unrelated photo that shares
    the output's name (street.jpg -> street.png). Only files predict wrote (they carry its PNG mark)
    are replaced; anything else stops the command before any write."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(photos / "street.jpg")
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(photos / "street.png")  # the user's own photo
    before = digest([photos])
    code, text = cli("predict", photos / "street.jpg", "--checkpoint", world["ckpt"], "--out", photos, "--overwrite")
    check(code, text, 2, "street.png", "not written by contextseg predict")
    assert digest([photos]) == before
    # a few hundred bytes claiming 20000 x 20000 pixels: its header is read, never its pixels (PIL's
    # bomb check used to end this in a traceback)
    (photos / "street.png").write_bytes(_huge_png_header(20000, 20000))
    before = digest([photos])
    code, text = cli("predict", photos / "street.jpg", "--checkpoint", world["ckpt"], "--out", photos, "--overwrite")
    check(code, text, 2, "street.png", "not written by contextseg predict")
    assert digest([photos]) == before
    out = tmp_path / "out"
    assert cli("predict", photos / "street.jpg", "--checkpoint", world["ckpt"], "--out", out)[0] == 0
    code, text = cli("predict", photos / "street.jpg", "--checkpoint", world["ckpt"], "--out", out, "--overwrite")
    check(code, text, 0, "wrote 1")  # its own outputs: replaced


def test_predict_skips_an_unreadable_image_and_reports_it(world, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(inputs / "good.png")
    (inputs / "broken.png").write_bytes(b"not a png at all")
    code, text = cli("predict", inputs, "--checkpoint", world["ckpt"], "--out", tmp_path / "out")
    check(code, text, 1, "skipped", "broken.png", "wrote 1 label PNG(s)", "1 image(s) failed")
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "broken.png").exists()


# -- one clear line, exit 2, for each of these ---------------------------------------------------
CASES = {
    "out_is_a_file": (lambda w, t: ["predict", w["photos"], "--checkpoint", w["ckpt"], "--out", _file(t / "f")], ["--out", "not a folder"]),
    "json_is_a_folder": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "--json", t], ["--json", "is a folder"]),
    "json_not_writable": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "--json", _file(t / "f") / "r.json"], ["--json", "is a file"]),
    "work_dir_is_a_file": (lambda w, t: ["train", w["config"], f"train.work_dir={_file(t / 'f')}"], ["train.work_dir", "is a file"]),
    "device_cuda_without_cuda": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "--device", "cuda"], ["'cuda'", "CUDA is not available"]),
    "pickle_as_pretrained_backbone": (lambda w, t: ["train", w["config"], f"model.pretrained_backbone={_pickle(t / 'evil.pth')}", f"train.work_dir={t / 'r'}"], ["pretrained_backbone", "evil.pth"]),
    "corrupt_pretrained_backbone": (lambda w, t: ["train", w["config"], f"model.pretrained_backbone={_bytes(t / 'bad.pth')}", f"train.work_dir={t / 'r'}"], ["pretrained_backbone", "bad.pth"]),
    "scales_huge": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "--scales", "1e9"], ["--scales", "1e9"]),
    "scales_empty": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "--scales", ","], ["--scales"]),
    "empty_checkpoint": (lambda w, t: ["eval", "--checkpoint", _bytes(t / "empty.pt", b"")], ["empty.pt", "the file is empty"]),
    "yaml_as_checkpoint": (lambda w, t: ["eval", "--checkpoint", w["config"]], ["tiny.yaml", "not a PyTorch file"]),
    "pickle_as_checkpoint": (lambda w, t: ["eval", "--checkpoint", _pickle(t / "evil.pt")], ["evil.pt", "refuses to create"]),
    "cpnet_export_at_another_size": (lambda w, t: ["export", "--checkpoint", w["cpnet"], "--out", t / "m.onnx", "--size", "64", "64"], ["--size 32 48", "prior"]),
    "resume_into_another_model": (lambda w, t: ["train", w["config"], f"train.work_dir={_copy(w['cpnet'], t / 'run')}"], ["'cpnet'", "'fcn'"]),
    "fresh_run_over_another_run": (lambda w, t: ["train", w["config"], f"train.work_dir={_copy(w['cpnet'], t / 'run')}", "train.resume=false"], ["holds checkpoints of another run", "--overwrite"]),
    "another_class_count": (lambda w, t: ["eval", "--checkpoint", w["ckpt"], "data.name=folder", f"data.root={_folder_dataset(t / 'ds')}", "data.kwargs={}"], ["3 classes", "9 classes"]),
}


def _folder_dataset(root: Path) -> Path:
    """A valid 3-class dataset in the folder layout."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "images" / split / "x.png")
        Image.fromarray(np.ones((32, 48), np.uint8)).save(root / "masks" / split / "x.png")
    (root / "classes.txt").write_text("a\nb\nc\n")
    return root


def _file(path: Path) -> Path:
    path.write_text("a file")
    return path


def _bytes(path: Path, data: bytes = b"\x80\x04garbage") -> Path:
    path.write_bytes(data)
    return path


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR claiming ``width`` x ``height`` greyscale pixels, then an empty IDAT and IEND."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _pickle(path: Path) -> Path:
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path.write_bytes(pickle.dumps({"weight": Evil()}))
    return path


def _copy(ckpt: Path, work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "last.pt").write_bytes(Path(ckpt).read_bytes())
    return work


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(world, tmp_path, case):
    make_args, names = CASES[case]
    args = make_args(world, tmp_path)
    watched = [world["ckpt"], world["cpnet"], world["photos"]] + [a for a in args if isinstance(a, Path) and a.exists()]
    before = digest(watched)
    code, out = run_main(args)  # in-process, as the families below (a subprocess per case cost ~5 s of start-up each)
    check(code, out, 2, *names)
    assert "code ran" not in out
    assert len([line for line in out.splitlines() if "error" in line]) == 1, out
    assert digest(watched) == before


def test_overrides_after_the_checkpoint_option_are_accepted(world, tmp_path):
    code, out = cli("eval", world["config"], "--checkpoint", world["ckpt"], "data.kwargs.length=2", "--json", tmp_path / "r.json")
    check(code, out, 0, "mIoU")
    assert "(2 images)" in out


def test_diverged_training_is_stopped_and_never_saved(world, tmp_path):
    """A step that makes a weight non-finite (as a too-high learning rate does after many steps; every
    learning rate the config accepts is at most 10, which this tiny run survives) stops the run at that
    iteration with one line, and no non-finite weight is saved."""
    steps = []

    def diverge(optimizer, args, kwargs):  # the third step of the run blows one weight up
        steps.append(1)
        if len(steps) == 3:
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].mul_(float("inf"))

    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(diverge)
    try:
        code, out = run_main(["train", world["config"], "train.max_iters=6", "train.checkpoint_interval=1", "train.precision=fp32",
                              f"train.work_dir={tmp_path / 'run'}"])
    finally:
        handle.remove()
    check(code, out, 2, "non-finite at iteration 3", "lower train.lr")
    assert "use train.precision=fp32" not in out  # the run already is fp32
    last = tmp_path / "run" / "last.pt"
    assert last.exists() and torch.load(last, weights_only=True)["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in torch.load(last, weights_only=True)["model"].values() if v.is_floating_point())


# -- data that is silently wrong -----------------------------------------------------------------
@pytest.mark.slow  # three data check runs in subprocesses: the slow tier
def test_data_check_names_orphan_masks_and_a_shared_problem_once(tmp_path):
    root = _folder_dataset(tmp_path / "ds")
    Image.fromarray(np.ones((32, 48), np.uint8)).save(root / "masks" / "train" / "orphan.png")
    before = digest([root])
    code, out = cli("data", "check", "folder", root)
    check(code, out, 1, "orphan.png", "has no image")
    assert "splits found: train, val; missing: none" in out  # which splits it looked at, and which it did not find
    (root / "classes.txt").unlink()
    code, out = cli("data", "check", "folder", root)
    check(code, out, 1, "classes.txt")
    assert out.count("classes.txt does not exist") == 1, out
    assert digest([root]) == {k: v for k, v in before.items() if not k.endswith("classes.txt")}


@pytest.mark.slow  # end-to-end predict runs (~12 s each): the slow tier
def test_sixteen_bit_grayscale_is_read_as_its_eight_bit_image(world, tmp_path):
    gray = np.random.default_rng(3).integers(0, 256, (40, 56)).astype(np.uint8)
    (tmp_path / "in16").mkdir()
    (tmp_path / "in8").mkdir()
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "in16" / "g.png")
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(tmp_path / "in8" / "g.png")
    for name in ("in16", "in8"):
        code, out = cli("predict", tmp_path / name, "--checkpoint", world["ckpt"], "--out", tmp_path / f"out_{name}")
        check(code, out, 0, "wrote 1")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out_in16" / "g.png")), np.asarray(Image.open(tmp_path / "out_in8" / "g.png")))


@pytest.mark.slow  # a training on a dataset of large images: the slow tier
def test_a_crop_larger_than_every_image_is_said_once(world, tmp_path):
    code, out = cli("train", world["config"], "data.crop_size=[512, 512]", "train.max_iters=2", f"train.work_dir={tmp_path / 'run'}")
    check(code, out, 0, "larger than every training image")
    assert out.count("warning:") == 1, out


# -- families: a table per family, each case run through the real command line in-process -----------
def run_main(args) -> tuple[int, str]:
    """``contextseg ARGS`` in this process (the same ``main`` as the console script): its exit code and
    everything it printed. An exception escaping ``main`` is a traceback for the user: it fails here."""
    import contextlib
    import io

    from contextseg.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, out.getvalue()


def run_family(case_args, expected_code, words, watched):
    before = digest(watched)
    code, out = run_main(case_args)
    check(code, out, expected_code, *words)
    if expected_code == 2:
        assert len([line for line in out.splitlines() if "error" in line]) == 1, out
    assert digest(watched) == before, "an input changed on disk"
    return out


@pytest.fixture(scope="module")
def saved(world, tmp_path_factory):
    """The tiny fcn checkpoint as a saved-model folder: its config.json and weights."""
    import json

    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("saved") / "fcn"
    assert run_main(["export", "--checkpoint", world["ckpt"], "--format", "safetensors", "--out", folder])[0] == 0
    return {"folder": folder, "meta": json.loads((folder / "config.json").read_text()), "weights": load_file(str(folder / "model.safetensors"))}


def _saved_variant(saved, root: Path, meta_change=None, weight_change=None, raw_json=None) -> Path:
    """A copy of the saved model with its config.json or weights changed."""
    import copy
    import json

    from safetensors.torch import save_file

    root.mkdir(parents=True)
    meta = copy.deepcopy(saved["meta"])
    if meta_change:
        meta_change(meta)
    (root / "config.json").write_text(raw_json if raw_json is not None else json.dumps(meta))
    weights = dict(saved["weights"])
    if weight_change:
        weight_change(weights)
    save_file(weights, str(root / "model.safetensors"))
    return root


def _first_float(weights) -> str:
    return next(k for k, v in sorted(weights.items()) if v.is_floating_point())


def _set(*path_and_value):
    *path, value = path_and_value

    def change(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


SAVED_MODEL_CASES = {  # name: (config.json change, weights change, raw config.json text, words of the message)
    "nan_weight": (None, lambda w: w.__setitem__(_first_float(w), torch.full_like(w[_first_float(w)], float("nan"))), None, ["non-finite", "model.safetensors"]),
    "inf_weight": (None, lambda w: w.__setitem__(_first_float(w), torch.full_like(w[_first_float(w)], float("inf"))), None, ["non-finite"]),
    "half_weights": (None, lambda w: w.update({k: v.half() for k, v in w.items() if v.is_floating_point()}), None, ["float16", "float32"]),
    "integer_weight": (None, lambda w: w.__setitem__(_first_float(w), w[_first_float(w)].long()), None, ["int64", "float32"]),
    "missing_tensor": (None, lambda w: w.pop(_first_float(w)), None, ["does not fit", "Missing"]),
    "config_is_a_list": (None, None, "[1, 2]", ["config.json", "JSON object"]),
    "config_not_json": (None, None, "{model: fcn", ["config.json", "not valid JSON"]),
    "model_is_a_string": (_set("model", "fcn"), None, None, ["model must be a mapping"]),
    "model_is_a_list": (_set("model", [1, 2]), None, None, ["model must be a mapping"]),
    "num_classes_text": (_set("model", "num_classes", "9"), None, None, ["model.num_classes"]),
    "unknown_model": (_set("model", "name", "unet"), None, None, ["unknown model 'unet'"]),
    "unknown_option": (_set("model", "colour", 1), None, None, ["unknown option", "colour"]),
    "inference_is_a_string": (_set("inference", "whole"), None, None, ["inference must be a mapping"]),
    "inference_is_a_list": (_set("inference", [1]), None, None, ["inference must be a mapping"]),
    "scale_negative": (_set("inference", "scales", [-1.0]), None, None, ["inference.scales", "(0, 8]"]),
    "scale_infinite": (None, None, "INF", ["inference.scales"]),  # raw text patched below: JSON's Infinity
    "scale_huge": (_set("inference", "scales", [1e9]), None, None, ["inference.scales", "(0, 8]"]),
    "mode_unknown": (_set("inference", "mode", "tile"), None, None, ["inference.mode"]),
    "flip_text": (_set("inference", "flip", "yes"), None, None, ["inference.flip", "bool"]),
    "base_size_zero": (_set("base_size", [0, 0]), None, None, ["base_size=[0, 0] is out of range", "[1, 16384]"]),
    "num_classes_huge": (_set("model", "num_classes", 10**30), None, None, ["config.json", f"model.num_classes={10**30}", "[1, 10000]"]),
    "width_huge": (_set("model", "channels", 10**30), None, None, ["config.json", f"model.channels={10**30}", "[1, 8192]"]),
    "crop_size_huge": (_set("crop_size", [10**30, 10**30]), None, None, ["config.json", "crop_size=", "[1, 16384]"]),
    "base_size_text": (_set("base_size", "big"), None, None, ["base_size"]),
    "crop_size_three": (_set("crop_size", [1, 2, 3]), None, None, ["crop_size"]),
    "mean_two_numbers": (_set("mean", [0.5, 0.5]), None, None, ["mean", "three"]),
    "std_zero": (_set("std", [0, 0, 0]), None, None, ["std", "positive"]),
    "std_nan": (None, None, "NAN", ["std"]),
    "palette_short": (lambda m: m.__setitem__("palette", m["palette"][:3]), None, None, ["palette", "9 colours"]),
    "palette_out_of_range": (lambda m: m.__setitem__("palette", [[999, 0, 0]] * 9), None, None, ["palette", "0..255"]),
    "classes_short": (_set("classes", ["a"]), None, None, ["classes", "9 names"]),
    "classes_a_string": (_set("classes", "abcdefghi"), None, None, ["classes"]),
}


@pytest.mark.parametrize("case", sorted(SAVED_MODEL_CASES))
def test_saved_model_family(world, saved, tmp_path, case):
    """A saved model's folder gets every check a .pt checkpoint gets, before it is used: predict
    and eval stop with one line naming config.json or model.safetensors and the key or tensor."""
    import json

    meta_change, weight_change, raw, words = SAVED_MODEL_CASES[case]
    if raw in ("INF", "NAN"):  # JSON that Python's json module reads as a non-finite float
        meta = json.loads(json.dumps(saved["meta"]))
        if raw == "INF":
            meta["inference"]["scales"] = [float("inf")]
        else:
            meta["std"] = [float("nan")] * 3
        raw = json.dumps(meta)
    folder = _saved_variant(saved, tmp_path / "model", meta_change, weight_change, raw)
    for args in (["predict", world["photos"] / "a" / "frame.png", "--checkpoint", folder, "--out", tmp_path / "out"],
                 ["eval", "--checkpoint", folder, "data.name=synthetic", "data.kwargs={size: [32, 48], length: 2}"]):
        run_family(args, 2, words, [folder, world["photos"]])
    assert not (tmp_path / "out").exists()


def test_saved_model_loading_never_reaches_the_network(saved, tmp_path, monkeypatch):
    """pretrained_backbone in a saved model is irrelevant (the weights follow); a missing path is a
    missing path unless it is a Hub id, and even then only with the hub extra."""
    import socket

    import contextseg as cs

    def no_network(*args, **kwargs):
        raise AssertionError("the network was reached")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for value in (True, "/nowhere/backbone.pth", "timm/resnet18d.a1_in1k"):
        folder = _saved_variant(saved, tmp_path / f"m{len(list(tmp_path.iterdir()))}", _set("model", "pretrained_backbone", value))
        assert cs.load(folder).num_classes == 9
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for missing in ("runs/nothing", "./nothing", "nothing.pt", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            cs.load(missing)
    import builtins

    real_import = builtins.__import__

    def without_hub(name, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_hub)
    with pytest.raises(FileNotFoundError, match=r"contextseg\[hub\]"):
        cs.load("someone/some-model")


CONFIG_CASES = {  # name: (config text or None for the tiny config, overrides, words)
    "duplicate_key": ("model: {name: fcn}\ntrain: {max_iters: 1}\ntrain: {max_iters: 2}\n", [], ["'train' appears twice", "line 3", "line 2"]),
    "duplicate_inner_key": ("model: {name: fcn, name: cpnet}\n", [], ["'name' appears twice"]),
    "alias_bomb": ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", [], ["aliases"]),
    "nested_too_deep": ("model: " + "[" * 3000 + "]" * 3000 + "\n", [], ["nested too deeply"]),
    "top_level_list": ("- model\n- train\n", [], ["top level must be a mapping"]),
    "top_level_text": ("just words\n", [], ["top level must be a mapping"]),
    "list_as_key": ("? [a, b]\n: 1\n", [], ["mapping key"]),
    "not_text": (b"\xff\xfe\x00bad", [], ["not text"]),
    "section_by_scalar": (None, ["model=3"], ["model=3", "section model"]),
    "section_by_list": (None, ["train=[1,2]"], ["section train"]),
    "section_by_null": (None, ["data="], ["section data"]),
    "subsection_by_scalar": (None, ["data.kwargs=5"], ["data.kwargs"]),
    "key_into_a_list": (None, ["data.crop_size.0=5"], ["'crop_size' is not a section"]),
    "lr_zero": (None, ["train.lr=0"], ["train.lr=0 is out of range", "(0, 10]"]),
    "lr_huge": (None, ["train.lr=1e300"], ["train.lr=1e+300 is out of range: expected a number in (0, 10]"]),
    "batch_size_huge": (None, ["train.batch_size=100000000000000000000000"], ["train.batch_size=100000000000000000000000", "[1, 65536]"]),
    "max_iters_huge": (None, ["train.max_iters=1" + "0" * 40], ["train.max_iters=1" + "0" * 40, "out of range"]),
    "warmup_negative": (None, ["train.warmup_iters=-5"], ["train.warmup_iters=-5", "[0, "]),
    "integer_too_long_to_read": (None, ["train.seed=1" + "0" * 5000], ["train.seed", "too long to be read"]),
    "integer_too_long_to_print": (None, ["data.kwargs.length=0x" + "f" * 5000], ["data.kwargs.length=<an integer of 6021 digits>"]),
    "classes_huge": (None, ["model.num_classes=1" + "0" * 30], ["model.num_classes=1" + "0" * 30, "[1, 10000]"]),
    "width_huge": (None, ["model.channels=100000000000000000000000"], ["model.channels=100000000000000000000000", "[1, 8192]"]),
    "crop_beyond_64_bits": (None, ["data.crop_size=[1" + "0" * 30 + ", 64]"], ["data.crop_size=[1" + "0" * 30 + ", 64]", "[1, 16384]"]),
    "lr_nan": (None, ["train.lr=.nan"], ["train.lr", "finite"]),
    "lr_text": (None, ["train.lr=fast"], ["train.lr", "float"]),
    "workers_negative": (None, ["data.num_workers=-1"], ["data.num_workers=-1", "[0, 256]"]),
    "ratio_negative": (None, ["data.ratio_range=[-1,2]"], ["data.ratio_range"]),
    "ratio_reversed": (None, ["data.ratio_range=[2,0.5]"], ["data.ratio_range", "low <= high"]),
    "ratio_one_number": (None, ["data.ratio_range=[1]"], ["data.ratio_range", "two numbers"]),
    "scale_infinite": (None, ["evaluate.scales=[.inf]"], ["evaluate.scales", "finite"]),
    "scale_huge": (None, ["evaluate.scales=[9]"], ["evaluate.scales", "(0, 8]"]),
    "scales_empty": (None, ["evaluate.scales=[]"], ["evaluate.scales"]),
    "flip_prob_two": (None, ["data.flip_prob=2"], ["data.flip_prob"]),
    "momentum_one": (None, ["train.momentum=1"], ["train.momentum"]),
    "seed_negative": (None, ["train.seed=-1"], ["train.seed"]),
    "model_option_nan": (None, ["model.aux_weight=.nan"], ["model.aux_weight", "finite"]),
    "batch_one_with_batchnorm": (None, ["train.batch_size=1"], ["BatchNorm", "train.batch_size"]),
    "ignore_index_differs": (None, ["model.ignore_index=0"], ["model.ignore_index=0", "255"]),
    "config_is_a_folder": ("FOLDER", [], ["is a folder"]),
    "name_leaves_runs": (None, ["name=../../escaped"], ["name='../../escaped' cannot be a folder name", "path separator"]),
    "name_absolute": ("model: {name: fcn}\nname: /tmp/elsewhere\n", [], ["name='/tmp/elsewhere' cannot be a folder name"]),
    "name_with_escape": (None, ['name="run\\x1b]0;owned\\x07"'], ["name='run\\x1b]0;owned\\x07' cannot be a folder name"]),
    "split_leaves_root": (None, ["data.val_split=../../etc"], ["data.val_split='../../etc'"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_family(world, tmp_path, case):
    """Configs and overrides: one line naming the key (and line), exit 2, before any file is written."""
    text, overrides, words = CONFIG_CASES[case]
    if text is None:
        config = world["config"]
    elif text == "FOLDER":
        config = tmp_path
    else:
        config = tmp_path / "bad.yaml"
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
    work = tmp_path / "run"
    run_family(["train", config, *overrides, f"train.work_dir={work}"], 2, words, [world["config"], world["ckpt"]])
    assert not work.exists() or not any(work.iterdir()), "a refused config wrote into the work dir"


def _another_runs_folder(world, tmp_path) -> Path:
    work = tmp_path / "run"
    shutil.copytree(world["ckpt"].parent, work)
    return work


REFUSED_RUNS = {  # overrides (given the folder each case prepares), words of the refusal, whether the folder is new
    "unknown_model": (lambda world, tmp: [f"train.work_dir={tmp / 'run'}", "model.name=unet"], ["unknown model 'unet'"], True),
    "missing_data_root": (lambda world, tmp: [f"train.work_dir={tmp / 'run'}", "data.name=camvid", "data.kwargs={}", f"data.root={tmp / 'nowhere'}"],
                          ["nowhere"], True),
    "another_runs_folder": (lambda world, tmp: [f"train.work_dir={_another_runs_folder(world, tmp)}", "train.resume=false"],
                            ["--overwrite"], False),
    "resume_another_model": (lambda world, tmp: [f"train.work_dir={world['cpnet'].parent}"], ["holds a 'cpnet' model"], False),
}


@pytest.mark.parametrize("case", sorted(REFUSED_RUNS))
def test_a_refused_run_prints_only_its_refusal(world, tmp_path, case):
    """Every input the trainer refuses (model, data, work dir, checkpoint) is refused before the run
    announces itself: no "training fcn (...) on ..." or "data: ..." line, as if it had started."""
    overrides, words, fresh = REFUSED_RUNS[case]
    before = digest([world["ckpt"].parent, world["cpnet"].parent])
    code, text = cli("train", world["config"], *overrides(world, tmp_path))
    check(code, text, 2, *words)
    assert not any(line.startswith(("training ", "data: ", "resumed from")) for line in text.splitlines()), text
    assert digest([world["ckpt"].parent, world["cpnet"].parent]) == before
    if fresh:
        assert not (tmp_path / "run").exists()


def test_an_accepted_run_announces_itself_once_with_the_precision_it_trains_in(world, tmp_path):
    code, text = cli("train", world["config"], f"train.work_dir={tmp_path / 'run'}")
    assert code == 0, text
    lines = text.splitlines()
    first = [i for i, line in enumerate(lines) if line.startswith("training fcn (resnet18d) on synthetic from ")]
    assert len(first) == 1 and "; precision " in lines[first[0]], text
    assert lines[first[0] + 1].startswith("data: 4 training and"), text
    assert sum(line.startswith("precision ") for line in lines) == 0, text  # said once, in the announcement


def _stripped(world, path: Path) -> Path:
    torch.save({"model": torch.load(world["ckpt"], weights_only=True)["model"]}, path)
    return path


def _safetensors(world, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(torch.load(world["ckpt"], weights_only=True)["model"], str(path))
    return path


RESUME_CASES = {  # name: (what train.resume names, words)
    "saved_model_folder": (lambda w, t, s: s["folder"], ["train.resume", "is a folder"]),
    "run_folder": (lambda w, t, s: w["ckpt"].parent, ["train.resume", "is a folder"]),
    "stripped_weights": (lambda w, t, s: _stripped(w, t / "weights.pt"), ["not a training checkpoint", "optimizer"]),
    "safetensors_file": (lambda w, t, s: _safetensors(w, t / "weights.safetensors"), ["not a training checkpoint"]),
    "a_list_in_a_torch_file": (lambda w, t, s: (torch.save([1, 2], t / "list.pt"), t / "list.pt")[1], ["list.pt", "not a contextseg checkpoint"]),
    "text_file": (lambda w, t, s: _file(t / "notes.pt"), ["notes.pt", "cannot read"]),
    "missing": (lambda w, t, s: t / "nope.pt", ["nope.pt", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_from_something_else_is_one_line(world, saved, tmp_path, case):
    source, words = RESUME_CASES[case]
    target = source(world, tmp_path, saved)
    run_family(["train", world["config"], f"train.resume={target}", f"train.work_dir={tmp_path / 'run'}", "train.max_iters=2"], 2, words,
               [world["ckpt"], saved["folder"], target])


def test_last_pt_that_is_a_folder_is_one_line(world, tmp_path):
    (tmp_path / "run" / "last.pt").mkdir(parents=True)
    run_family(["train", world["config"], f"train.work_dir={tmp_path / 'run'}"], 2, ["last.pt is a folder"], [world["ckpt"]])


def test_a_torn_log_is_repaired_on_resume(world, tmp_path):
    """A kill while appending to log.jsonl tears its last line (and a damaged disk leaves bytes that
    are not text): resuming drops those lines, says how many, and the log is JSON lines again."""
    import json

    run = _copy(world["ckpt"], tmp_path / "run")
    log = run / "log.jsonl"
    log.write_bytes(b'{"event": "train", "iter": 1, "loss": 1.0}\n\xff\xfe not text\n{"event": "train", "it')
    code, out = run_main(["train", world["config"], f"train.work_dir={run}", "train.max_iters=2"])
    check(code, out, 0, "log.jsonl", "dropped 2 line(s)")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r.get("event") for r in records][:2] == ["train", "resume"] and records[-1]["iter"] == 2


def _limited_cli(limit_bytes: int, *args):
    """``contextseg ARGS`` in a process that may not write files larger than ``limit_bytes``: a
    write past it fails with EFBIG, as a full disk fails with ENOSPC."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the failed write raises instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    proc = subprocess.run([sys.executable, "-m", "contextseg", *map(str, args)], capture_output=True, text=True, timeout=600, preexec_fn=limit)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow  # a training in a subprocess with a file-size limit: the slow tier
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one(world, tmp_path):
    run = _copy(world["ckpt"], tmp_path / "run")
    before = digest([run / "last.pt"])
    code, out = _limited_cli(1 << 20, "train", world["config"], f"train.work_dir={run}", "train.max_iters=2")
    check(code, out, 2, "cannot write", "last.pt", "nothing partial")
    assert digest([run / "last.pt"]) == before
    assert not list(run.glob(".*.tmp")), "a partial temporary file was left"


@pytest.mark.slow  # predict in a subprocess with a file-size limit: the slow tier
def test_a_full_disk_while_writing_predictions_leaves_no_partial_png(world, tmp_path):
    out_dir = tmp_path / "out"
    code, out = _limited_cli(2048, "predict", world["photos"] / "a" / "frame.png", "--checkpoint", world["ckpt"], "--out", out_dir)
    check(code, out, 2, "cannot write", "frame", ".png", "nothing partial")
    for png in out_dir.rglob("*.png"):
        Image.open(png).verify()  # whatever exists is whole
    assert not list(out_dir.rglob(".*.tmp"))


# -- images: what a photo folder really holds ----------------------------------------------------------
def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width x height`` (a decompression bomb's header) over a few
    bytes of data: decoding it would ask for gigabytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def _exif_rotated_jpeg(path: Path, rgb: np.ndarray, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, quality=100)
    return path


IMAGE_CASES = {  # name: (make the file(s) in a folder, extra options, expected code, words)
    "decompression_bomb_header": (lambda d: _png_declaring(d / "bomb.png", 60000, 60000), [], 1, ["bomb.png", "60000x60000 = 3600 megapixels, over the limit of 100 megapixels", "--max-pixels"]),
    "over_a_lowered_limit": (lambda d: Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(d / "big.png"), ["--max-pixels", "1000"], 1, ["big.png", "56x40 = 2240 pixels, over the limit of 1000 pixels"]),
    "truncated_png": (lambda d: (d / "cut.png").write_bytes(_png_bytes()[:60]), [], 1, ["cut.png", "cannot read"]),
    "text_named_png": (lambda d: (d / "notes.png").write_text("hello"), [], 1, ["notes.png", "cannot read"]),
    "empty_file": (lambda d: (d / "empty.jpg").write_bytes(b""), [], 1, ["empty.jpg"]),
}


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("command", ["predict", "explain"])
@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_image_family(world, tmp_path, case, command):
    """An image that cannot or must not be decoded is skipped with a line naming it and why; the
    good image beside it is still written; exit 1 (some inputs failed)."""
    make, options, code, words = IMAGE_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    make(inputs)
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(inputs / "good.png")
    checkpoint = world["ckpt"] if command == "predict" else world["cpnet"]
    before = digest([inputs])
    good_counts = 0 if case == "over_a_lowered_limit" else 1
    out = run_family([command, inputs, "--checkpoint", checkpoint, "--out", tmp_path / "out", *options], code, ["skipped", *words], [inputs])
    assert digest([inputs]) == before
    assert len(list((tmp_path / "out").glob("good*.png"))) >= good_counts, out
    assert ": ;" not in out and "0.0 megapixels" not in out, out  # no empty list of pictures, no count rounded to nothing


def test_data_check_reports_a_bomb_image_without_decoding_it(tmp_path):
    root = _folder_dataset(tmp_path / "ds")
    _png_declaring(root / "images" / "train" / "x.png", 60000, 60000)
    code, out = run_main(["data", "check", "folder", root])
    check(code, out, 1, "x.png", "over the limit")
    code, out = run_main(["data", "check", "folder", root, "--max-pixels", "5e9"])
    check(code, out, 1, "x.png", "cannot read")  # allowed now, and PIL finds the data truncated


def test_exif_orientation_is_applied_so_labels_match_the_photo_as_displayed(world, tmp_path):
    import contextseg as cs

    rgb = np.random.default_rng(5).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    photo = _exif_rotated_jpeg(tmp_path / "phone.jpg", rgb)  # stored 56 wide, displayed 40 wide
    code, out = run_main(["predict", photo, "--checkpoint", world["ckpt"], "--out", tmp_path / "out"])
    check(code, out, 0, "wrote 1")
    labels = np.asarray(Image.open(tmp_path / "out" / "phone.png"))
    assert labels.shape == (56, 40)
    displayed = np.asarray(Image.open(photo).transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(labels, cs.load(world["ckpt"]).predict(displayed).numpy())


def test_a_multi_frame_file_uses_its_first_frame_with_a_notice(world, tmp_path):
    frames = [Image.fromarray(np.full((40, 56, 3), v, np.uint8)) for v in (30, 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    code, out = run_main(["predict", tmp_path / "anim.gif", "--checkpoint", world["ckpt"], "--out", tmp_path / "out"])
    check(code, out, 0, "anim.gif has 2 frames; the first is used", "wrote 1")


def test_sixteen_bit_image_as_a_pil_object_equals_its_path(world, tmp_path):
    import contextseg as cs

    model = cs.load(world["ckpt"])
    gray = (np.random.default_rng(3).integers(0, 65536, (40, 56))).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    from_path = model.predict(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")
        assert torch.equal(model.predict(img), from_path)
    assert torch.equal(model.predict(gray), from_path)  # the uint16 array itself


API_CASES = {  # name: (input to model.predict, words of the ValueError)
    "nan_tensor": (torch.full((3, 8, 8), float("nan")), ["NaN or infinite"]),
    "inf_tensor": (torch.full((1, 3, 8, 8), float("inf")), ["NaN or infinite"]),
    "empty_tensor": (torch.zeros(3, 0, 8), ["H, W > 0"]),
    "tensor_five_dims": (torch.zeros(1, 1, 3, 8, 8), ["(3, H, W)"]),
    "tensor_two_channels": (torch.zeros(2, 8, 8), ["(3, H, W)"]),
    "empty_array": (np.zeros((0, 0, 3), np.uint8), ["empty image"]),
    "nan_array": (np.full((8, 8, 3), np.nan, np.float32), ["NaN or infinite"]),
    "bool_array": (np.zeros((8, 8, 3), bool), ["bool"]),
    "complex_array": (np.zeros((8, 8, 3), np.complex64), ["complex64"]),
    "object_array": (np.array([[object()]]), ["object"]),
    "negative_ints": (np.full((8, 8, 3), -5, np.int32), ["0..255"]),
    "floats_over_255": (np.full((8, 8, 3), 300.0), ["[0, 1] or [0, 255]"]),
    "two_channels": (np.zeros((8, 8, 2), np.uint8), ["uint8 array"]),
    "a_string_that_is_no_file": ("/nowhere/photo.png", ["photo.png"]),
    "scales_huge": ((np.zeros((8, 8, 3), np.uint8), {"scales": [1e9]}), ["scales"]),
    "scales_nan": ((np.zeros((8, 8, 3), np.uint8), {"scales": [float("nan")]}), ["scales"]),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_python_api_input_family(world, case):
    import contextseg as cs

    value, words = API_CASES[case]
    value, settings = value if isinstance(value, tuple) else (value, {})
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        cs.load(world["ckpt"]).predict(value, **settings)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert "\n" not in str(info.value)


def test_python_api_casts_what_it_documents(world):
    import contextseg as cs

    model = cs.load(world["ckpt"])
    rgb = np.random.default_rng(9).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    reference = model.predict(rgb)
    same = [
        np.concatenate([rgb, np.full((40, 56, 1), 7, np.uint8)], 2),  # RGBA: alpha dropped
        rgb.astype(np.float32) / 255,  # floats in [0, 1]
        rgb.astype(np.float64),  # floats in 0..255
        rgb.astype(np.int64),  # integers in 0..255
        torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),  # torchvision's (3, H, W) uint8
        Image.fromarray(rgb),
    ]
    for value in same:
        assert torch.equal(model.predict(value), reference)
    gray = rgb[..., 0]
    assert torch.equal(model.predict(gray), model.predict(np.repeat(gray[..., None], 3, 2)))
    normalised = torch.randn(3, 40, 56)
    assert model.predict(normalised.half()).shape == (40, 56)  # any float dtype: cast to the weights'


# -- converters, export and explain arguments --------------------------------------------------------
def _hanet_file(path: Path, change) -> Path:
    """A file in the HANet release's layout (only its classifier and aux tensors matter to the
    cases: the converter reads them before the layout check)."""
    state = {"final2.0.weight": torch.randn(19, 256, 1, 1), "dsn.0.bias": torch.randn(512), "dsn.1.running_mean": torch.randn(512),
             "layer1.0.conv1.weight": torch.randn(64, 128, 1, 1)}
    change(state)
    torch.save({"state_dict": state}, path)
    return path


CONVERT_CASES = {  # name: (make the source file, converter options, words)
    "classifier_0d": (lambda p: _hanet_file(p, lambda s: s.__setitem__("final2.0.weight", torch.tensor(1.0))), ["hanet"], ["final2.0.weight", "shape ()"]),
    "classifier_1d": (lambda p: _hanet_file(p, lambda s: s.__setitem__("final2.0.weight", torch.randn(19))), ["hanet"], ["final2.0.weight", "(19,)"]),
    "aux_bias_misshaped": (lambda p: _hanet_file(p, lambda s: s.__setitem__("dsn.0.bias", torch.randn(3, 3))), ["hanet"], ["dsn.0.bias"]),
    "aux_shapes_differ": (lambda p: _hanet_file(p, lambda s: s.__setitem__("dsn.0.bias", torch.randn(7))), ["hanet"], ["dsn.0.bias", "(7,)", "(512,)"]),
    "classifier_missing": (lambda p: _hanet_file(p, lambda s: s.pop("final2.0.weight")), ["hanet"], ["final2.0.weight"]),
    "not_tensors": (lambda p: (torch.save({"state_dict": {"final2.0.weight": [1, 2]}}, p), p)[1], ["hanet"], ["no state dict of tensors"]),
    "mmseg_classifier_0d": (lambda p: (torch.save({"state_dict": {"decode_head.conv_seg.weight": torch.tensor(2.0), "decode_head.conv_cat.conv.weight": torch.zeros(1)}}, p), p)[1],
                            ["mmseg", "--model", "fcn"], ["decode_head.conv_seg.weight", "shape ()"]),
    "encoding_not_a_resnet": (lambda p: (torch.save({"conv1.weight": torch.zeros(1)}, p), p)[1], ["encoding-resnet"], ["not a PyTorch-Encoding ResNet"]),
}


@pytest.mark.parametrize("case", sorted(CONVERT_CASES))
def test_converter_family(tmp_path, case):
    make, options, words = CONVERT_CASES[case]
    source = make(tmp_path / "official.pth")
    out = tmp_path / ("out.safetensors" if options[0] == "encoding-resnet" else "out")
    run_family(["convert", options[0], source, "--out", out, *options[1:]], 2, words, [source])
    assert not out.exists()


def test_converters_refuse_integer_or_non_finite_weights_by_name():
    from contextseg.engine.convert import ConversionError
    from contextseg.engine.convert.reading import check_and_load

    model = torch.nn.Conv2d(2, 3, 1)
    with pytest.raises(ConversionError, match=r"weight: int64 in the file, float32 expected"):
        check_and_load(model, {"weight": torch.zeros(3, 2, 1, 1, dtype=torch.int64), "bias": torch.zeros(3)}, "f.pth")
    with pytest.raises(ConversionError, match=r"NaN or infinite values \['bias'\]"):
        check_and_load(model, {"weight": torch.zeros(3, 2, 1, 1), "bias": torch.full((3,), float("nan"))}, "f.pth")


ARGUMENT_CASES = {  # name: (arguments, words); each exit 2 before any output is written
    "alpha_above_one": (lambda w, t: ["predict", w["photos"], "--checkpoint", w["ckpt"], "--out", t / "o", "--alpha", "2"], ["--alpha", "from 0"]),
    "alpha_nan": (lambda w, t: ["predict", w["photos"], "--checkpoint", w["ckpt"], "--out", t / "o", "--alpha", "nan"], ["--alpha"]),
    "max_pixels_zero": (lambda w, t: ["predict", w["photos"], "--checkpoint", w["ckpt"], "--out", t / "o", "--max-pixels", "0"], ["--max-pixels"]),
    "export_size_zero": (lambda w, t: ["export", "--checkpoint", w["ckpt"], "--out", t / "o" / "m.onnx", "--size", "0", "0"], ["--size", "from 1"]),
    "export_size_negative": (lambda w, t: ["export", "--checkpoint", w["ckpt"], "--out", t / "o" / "m.onnx", "--size", "-5", "3"], ["--size"]),
    "export_size_huge": (lambda w, t: ["export", "--checkpoint", w["ckpt"], "--out", t / "o" / "m.onnx", "--size", "100000", "3"], ["--size", "16384"]),
    "synthetic_size_zero": (lambda w, t: ["data", "export-synthetic", t / "o", "--size", "0", "5"], ["--size"]),
    "synthetic_length_zero": (lambda w, t: ["data", "export-synthetic", t / "o", "--length", "0"], ["--length"]),
    "bench_batch_zero": (lambda w, t: ["bench", "--batch", "0"], ["--batch"]),
    "pixel_not_numbers": (lambda w, t: ["explain", w["photos"], "--checkpoint", w["cpnet"], "--out", t / "o", "--pixel", "a,b"], ["--pixel", "x,y"]),
    "pixel_outside": (lambda w, t: ["explain", w["photos"] / "a" / "frame.png", "--checkpoint", w["cpnet"], "--out", t / "o", "--pixel", "999,3"], ["(999, 3)", "56x40"]),
    "pixel_too_negative": (lambda w, t: ["explain", w["photos"] / "a" / "frame.png", "--checkpoint", w["cpnet"], "--out", t / "o", "--pixel", "-57,-1"], ["(-57, -1)", "negative"]),
}


@pytest.mark.parametrize("case", sorted(ARGUMENT_CASES))
def test_argument_family(world, tmp_path, case):
    make, words = ARGUMENT_CASES[case]
    run_family(make(world, tmp_path), 2, words, [world["ckpt"], world["cpnet"], world["photos"]])
    assert not any(p.is_file() for p in (tmp_path / "o").rglob("*")) if (tmp_path / "o").exists() else True


def test_negative_pixels_count_from_the_far_edges(world, tmp_path):
    from contextseg.engine.pictures.explain import explain

    import contextseg as cs

    model = cs.load(world["cpnet"])
    photo = np.asarray(Image.open(world["photos"] / "a" / "frame.png").convert("RGB"))
    assert explain(model, photo, pixels=[(-1, -1)])["pixels"] == explain(model, photo, pixels=[(55, 39)])["pixels"]
    code, out = run_main(["explain", world["photos"] / "a" / "frame.png", "--checkpoint", world["cpnet"], "--out", tmp_path / "o", "--pixel", "-1,-1"])
    check(code, out, 0, "wrote")


def _checkpoint_variant(world, path: Path, change) -> Path:
    ckpt = torch.load(world["ckpt"], weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


def _first_weight(ckpt) -> str:
    return next(k for k, v in ckpt["model"].items() if v.is_floating_point())


CHECKPOINT_CASES = {  # name: (change to a trained last.pt, used by: predict / resume, words)
    "config_a_string": (lambda c: c.__setitem__("config", "abc"), "predict", ["its config is a str"]),
    "config_a_list": (lambda c: c.__setitem__("config", [1]), "predict", ["its config is a list"]),
    "config_model_a_string": (lambda c: c["config"].__setitem__("model", "fcn"), "predict", ["model must be a mapping"]),
    "classes_a_string": (lambda c: c.__setitem__("classes", "abc"), "predict", ["classes"]),
    "classes_numbers": (lambda c: c.__setitem__("classes", list(range(9))), "predict", ["classes", "9 names"]),
    "palette_a_string": (lambda c: c.__setitem__("palette", "red"), "predict", ["palette"]),
    "weights_a_list": (lambda c: c.__setitem__("model", [1]), "predict", ["no model weights"]),
    "weights_nan": (lambda c: c["model"].__setitem__(_first_weight(c), c["model"][_first_weight(c)] * float("nan")), "predict", ["non-finite"]),
    "weights_half": (lambda c: c.__setitem__("model", {k: v.half() if v.is_floating_point() else v for k, v in c["model"].items()}), "resume", ["float16", "float32"]),
    "iteration_text": (lambda c: c.__setitem__("iteration", "x"), "resume", ["iteration is damaged"]),
    "optimizer_text": (lambda c: c.__setitem__("optimizer", "x"), "resume", ["optimizer state is damaged"]),
    "scheduler_text": (lambda c: c.__setitem__("scheduler", 3), "resume", ["scheduler state is damaged"]),
    "rng_damaged": (lambda c: c.__setitem__("rng", [{"torch": 1}]), "resume", ["random number generator state is damaged"]),
    "iteration_fraction": (lambda c: c.__setitem__("iteration", 2.5), "resume", ["iteration is damaged", "whole number"]),
    "iteration_huge": (lambda c: c.__setitem__("iteration", 10**30), "resume", ["iteration is damaged"]),
    "pending_eval_text": (lambda c: c.__setitem__("pending_eval", "yes"), "resume", ["pending_eval is damaged"]),
    "scheduler_wrong_types": (lambda c: c["scheduler"].__setitem__("last_epoch", "x"), "resume", ["scheduler state is damaged", "last_epoch"]),
    "scheduler_lr_list": (lambda c: c["scheduler"].__setitem__("_last_lr", [0.1] * 7), "resume", ["scheduler state is damaged", "_last_lr"]),
    "optimizer_lr_text": (lambda c: c["optimizer"]["param_groups"][0].__setitem__("lr", "fast"), "resume", ["optimizer state is damaged", "lr"]),
    "optimizer_moment_shape": (lambda c: c["optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(3)), "resume", ["optimizer state is damaged", "exp_avg"]),
    "nested_deep": (lambda c: c.__setitem__("extra", _nested(200)), "predict", ["nested deeper than"]),  # torch.save itself recurses: 200 levels, not 100,000
    # a few hundred bytes naming one list a billion times through the pickle's memo: read, it would
    # be walked (the config checked, the metrics printed) for hours
    "shared_config": (lambda c: c["config"]["data"]["kwargs"].__setitem__("junk", _shared(9)), "predict", ["expand to more than 1000000 values", "shared references"]),
    "shared_metrics": (lambda c: c.__setitem__("metrics", {"IoU": _shared(9)}), "resume", ["expand to more than 1000000 values"]),
    "contains_itself": (lambda c: c["config"].__setitem__("extra", _cycle()), "predict", ["contain themselves"]),
}


def _shared(levels: int) -> list:
    value: list = [0.5] * 10
    for _ in range(levels - 1):
        value = [value] * 10
    return value


def _cycle() -> list:
    value: list = [1]
    value.append(value)
    return value


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_non_finite_best_miou_is_unknown_and_best_pt_is_written_again(world, tmp_path):
    """best_miou NaN in last.pt used to be beaten by no evaluation, so best.pt was never written again."""
    run = tmp_path / "run"
    run.mkdir()
    _checkpoint_variant(world, run / "last.pt", lambda c: c.__setitem__("best_miou", float("nan")))
    code, out = run_main(["train", world["config"], f"train.work_dir={run}", "train.max_iters=2"])
    check(code, out, 0, "best mIoU (nan) is not a number", "unknown")
    assert torch.load(run / "best.pt", weights_only=True)["iteration"] == 2


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint_file_family(world, tmp_path, case):
    """A .pt file whose entries were edited or damaged (weights_only loading accepts any plain data):
    one line naming the entry, whether it is predicted with or resumed from."""
    change, use, words = CHECKPOINT_CASES[case]
    if use == "predict":
        source = _checkpoint_variant(world, tmp_path / "edited.pt", change)
        run_family(["predict", world["photos"], "--checkpoint", source, "--out", tmp_path / "out"], 2, words, [source, world["photos"]])
        assert not (tmp_path / "out").exists()
    else:
        run = tmp_path / "run"
        run.mkdir()
        source = _checkpoint_variant(world, run / "last.pt", change)
        run_family(["train", world["config"], f"train.work_dir={run}", "train.max_iters=2"], 2, words, [source])


OPTION_CASES = {  # overrides of a training (or an evaluation with --checkpoint), words of the one line
    "dataset_option_of_wrong_type": (["data.kwargs.size=big"], ["dataset 'synthetic'", "cannot be built"]),
    "dataset_length_negative": (["data.kwargs.length=-3"], ["dataset 'synthetic'"]),
    "dataset_option_unknown": (["data.kwargs.colour=1"], ["colour"]),
    "dataset_unknown": (["data.name=coco"], ["unknown dataset 'coco'"]),
    "width_zero": (["model.channels=0"], ["model.channels=0 is out of range", "[1, 8192]"]),
    "width_negative": (["model.aux_channels=-4"], ["model.aux_channels=-4 is out of range"]),
    "loss_weight_negative": (["model.aux_weight=-1"], ["model.aux_weight=-1 is out of range", "[0, 1000]"]),
    "dropout_above_one": (["model.dropout=2"], ["dropout"]),
    "device_unknown": (["train.device=tpu"], ["device 'tpu'"]),
    "crop_huge": (["data.crop_size=[100000, 100000]"], ["data.crop_size=[100000, 100000]", "[1, 16384]"]),
    "eval_window_huge": (["evaluate.mode=slide", "evaluate.crop_size=[100000, 100000]"], ["evaluate.crop_size"]),
    "base_size_huge": (["data.base_size=[100000000, 1000000]"], ["data.base_size"]),
    "eval_split_unknown": (["EVAL", "--split", "test2"], ["split", "test2"]),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_model_and_data_option_family(world, tmp_path, case):
    args, words = OPTION_CASES[case]
    if args[0] == "EVAL":
        command = ["eval", "--checkpoint", world["ckpt"], *args[1:]]
    else:
        command = ["train", world["config"], *args, f"train.work_dir={tmp_path / 'run'}"]
    run_family(command, 2, words, [world["config"], world["ckpt"]])
    assert not (tmp_path / "run" / "last.pt").exists()


def test_out_of_memory_is_one_line(monkeypatch, world, tmp_path):
    """An allocation the machine cannot make (an image or a batch too large for it) ends in one line
    with what to shrink, not in a C++ allocator traceback."""
    from contextseg.models import segmentor

    def allocation_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 120000000000 bytes")

    monkeypatch.setattr(segmentor, "predict_labels", allocation_fails)
    code, out = run_main(["predict", world["photos"] / "a" / "frame.png", "--checkpoint", world["ckpt"], "--out", tmp_path / "out"])
    check(code, out, 2, "out of memory", "smaller")


# -- one writer per output, never through a link ------------------------------------------------
def test_a_second_predict_or_export_into_one_output_is_refused(world, tmp_path):
    from contextseg.engine.checkpoints.files import output_lock

    out = tmp_path / "preds"
    with output_lock(out, "--out", "predict"):  # another predict is writing there
        code, text = run_main(["predict", world["photos"], "--checkpoint", world["ckpt"], "--out", out])
    check(code, text, 2, "being written by another contextseg predict", "preds")
    assert not list(out.rglob("*.png"))
    for fmt, target in (("onnx", tmp_path / "model.onnx"), ("safetensors", tmp_path / "saved")):
        with output_lock(target, "--out", "export"):
            code, text = run_main(["export", "--checkpoint", world["ckpt"], "--format", fmt, "--out", target])
        check(code, text, 2, "being written by another contextseg export")
        assert not (target.exists() and (target.is_file() or any(target.iterdir())))
    assert not list(tmp_path.glob(".*contextseg-lock"))  # released locks leave nothing behind


def test_outputs_are_never_written_through_a_link(world, tmp_path):
    victim = tmp_path / "precious.bin"
    victim.write_bytes(b"the user's data")
    before = digest([victim])
    onnx = tmp_path / "model.onnx"
    onnx.symlink_to(victim)
    code, text = run_main(["export", "--checkpoint", world["ckpt"], "--out", onnx, "--overwrite"])
    check(code, text, 2, "model.onnx", "symbolic link")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model.safetensors").symlink_to(victim)
    code, text = run_main(["export", "--checkpoint", world["ckpt"], "--format", "safetensors", "--out", saved, "--overwrite"])
    check(code, text, 2, "model.safetensors", "symbolic link")
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "classes.txt").symlink_to(victim)
    code, text = run_main(["data", "export-synthetic", scenes, "--splits", "val", "--length", "1", "--size", "32", "64", "--overwrite"])
    check(code, text, 2, "classes.txt", "symbolic link")
    assert digest([victim]) == before


@pytest.mark.slow  # predict and a refused resume: the slow tier
def test_a_checkpoint_of_another_version_predicts_with_a_warning_and_is_not_resumed(world, tmp_path):
    ckpt = torch.load(world["ckpt"], weights_only=False)
    ckpt["config"]["train"]["future_option"] = 3  # a key a later version added
    del ckpt["config"]["evaluate"]["antialias"]  # a key an earlier version did not have
    other = tmp_path / "other_version.pt"
    torch.save(ckpt, other)
    code, out = cli("predict", world["photos"] / "a", "--checkpoint", other, "--out", tmp_path / "preds")
    check(code, out, 0, "another contextseg version", "train.future_option", "evaluate.antialias")
    assert len(list((tmp_path / "preds").glob("*.png"))) == 2
    code, out = cli("train", world["config"], f"train.resume={other}", f"train.work_dir={tmp_path / 'run'}", "train.max_iters=2")
    check(code, out, 2, "cannot resume", "another contextseg version", "train.future_option", "evaluate.antialias")


def test_export_options_are_checked_before_any_work_and_no_other_opset_is_written(world, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    code, text = run_main(["export", "--checkpoint", world["ckpt"], "--out", out, "--opset", "11"])
    check(code, text, 2, "--opset 11", "18 to")
    assert not out.exists()
    export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: export(*a, **{**k, "opset_version": 18}))  # an exporter that falls back
    code, text = run_main(["export", "--checkpoint", world["ckpt"], "--out", out, "--opset", "19"])
    check(code, text, 2, "opset 19 was asked for but the exporter wrote opset 18")
    assert not out.exists() and not list(tmp_path.glob(".model.onnx*"))


def test_data_check_reports_lossy_masks_shared_stems_and_bad_class_names(tmp_path):
    root = _folder_dataset(tmp_path / "ds")
    stripes = (np.arange(48)[None, :].repeat(32, 0) // 16).astype(np.uint8)  # classes 0, 1, 2 with sharp edges
    Image.fromarray(stripes).save(root / "masks" / "train" / "x.png", format="JPEG", quality=75)  # JPEG under a .png name
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "images" / "val" / "x.jpg")  # shares x.png's stem
    before = digest([root])
    code, out = run_main(["data", "check", "folder", root])
    check(code, out, 1, "masks/train/x.png holds JPEG data", "share the name 'x'")
    for text, words in (("a\nb\na\n", ["names 'a' twice", "classes 0 and 2"]), ("a\n\nb\n", ["line 2 is blank"])):
        (root / "classes.txt").write_text(text)
        code, out = run_main(["data", "check", "folder", root])
        check(code, out, 1, *words)
    assert {k: v for k, v in digest([root]).items() if not k.endswith("classes.txt")} == {k: v for k, v in before.items() if not k.endswith("classes.txt")}
    (root / "classes.txt").write_text("a\nb\nc\n\n\n")  # trailing blank lines are only the file's end
    Image.fromarray(stripes).save(root / "masks" / "train" / "x.png")
    (root / "images" / "val" / "x.jpg").unlink()
    code, out = run_main(["data", "check", "folder", root])
    check(code, out, 0)


# -- writers: nothing the package writes replaces a user's file --------------------------------------
def _foreign_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)  # a user's picture: no contextseg mark
    return path


def test_a_config_is_never_written_over_by_its_own_run(world, tmp_path):
    """A config named config.yaml whose train.work_dir is its own folder (or a _base_ of it there) was
    replaced by the run's resolved dump; a config.yaml or log.jsonl of someone else in the work dir too."""
    folder = tmp_path / "exp"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "work_dir": str(folder)}}))
    run_family(["train", config], 2, ["holds the config this run reads", "config.yaml", "train.work_dir"], [folder])
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"_base_": str(config), "train": {"work_dir": str(folder)}}))
    run_family(["train", child], 2, ["holds the config this run reads"], [folder])  # its base
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("# my notes\nlr: 0.1\n")
    run_family(["train", world["config"], f"train.work_dir={other}", "--overwrite"], 2, ["config.yaml", "not written by contextseg"], [other])
    (other / "config.yaml").unlink()
    (other / "log.jsonl").write_text("my own log\n")
    run_family(["train", world["config"], f"train.work_dir={other}", "--overwrite"], 2, ["log.jsonl", "not written by contextseg"], [other])


def test_a_run_writes_a_marked_config_it_may_rewrite_when_resumed(world, tmp_path):
    run = tmp_path / "run"
    code, out = run_main(["train", world["config"], f"train.work_dir={run}"])
    check(code, out, 0)
    from contextseg.data.io import written_by_contextseg

    assert (run / "config.yaml").read_text().startswith("# written by contextseg") and written_by_contextseg(run / "config.yaml")
    code, out = run_main(["train", world["config"], f"train.work_dir={run}", "train.max_iters=2"])  # resumed: its own files are rewritten
    check(code, out, 0)


def test_explain_never_replaces_a_picture_and_keeps_inputs_of_one_stem_apart(world, tmp_path):
    out = tmp_path / "pictures"
    a, b = world["photos"] / "a" / "frame.png", world["photos"] / "b" / "frame.png"
    code, text = run_main(["explain", a, b, "--checkpoint", world["cpnet"], "--out", out])
    check(code, text, 0, "share a file name")
    pictures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert {p.split("/")[0] for p in pictures} == {"a", "b"} and len(pictures) % 2 == 0, pictures  # two sets, one per input
    code, text = run_main(["explain", a, b, "--checkpoint", world["cpnet"], "--out", out])
    check(code, text, 2, "exists already (written by contextseg)", "--overwrite")
    code, text = run_main(["explain", a, b, "--checkpoint", world["cpnet"], "--out", out, "--overwrite"])
    check(code, text, 0)
    theirs = out / "solo"
    _foreign_png(theirs / f"frame_{pictures[0].split('_', 1)[1]}")
    for flags in ([], ["--overwrite"]):
        run_family(["explain", a, "--checkpoint", world["cpnet"], "--out", theirs, *flags], 2, ["not written by contextseg"], [theirs])


def test_eval_outputs_never_replace_an_input_or_a_file_of_someone_else(world, tmp_path):
    json_path = tmp_path / "results.json"
    json_path.write_text('{"mine": 1}')
    for flags in ([], ["--overwrite"]):
        run_family(["eval", "--checkpoint", world["ckpt"], "--json", json_path, *flags], 2, ["--json", "not written by contextseg"], [json_path])
    run_family(["eval", "--checkpoint", world["ckpt"], "--json", world["ckpt"], "--overwrite"], 2, ["is an input of this command"], [world["ckpt"]])
    plots = tmp_path / "plots"
    _foreign_png(plots / "confusion.png")
    run_family(["eval", "--checkpoint", world["ckpt"], "--plots", plots, "--overwrite"], 2, ["confusion.png", "not written by contextseg"], [plots])
    own = tmp_path / "own.json"
    check(*run_main(["eval", "--checkpoint", world["ckpt"], "--json", own]), 0)
    check(*run_main(["eval", "--checkpoint", world["ckpt"], "--json", own]), 2, "exists already", "--overwrite")
    check(*run_main(["eval", "--checkpoint", world["ckpt"], "--json", own, "--overwrite"]), 0)


def test_a_fifo_is_named_as_one(world, tmp_path):
    import os

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code, text = run_main(["eval", "--checkpoint", world["ckpt"], "--json", fifo, "--overwrite"])
    check(code, text, 2, "FIFO")
    assert "does not exist" not in text


def test_save_pretrained_never_replaces_a_foreign_config_json(world, tmp_path):
    import contextseg as cs
    from contextseg.data.io import OutputRefused

    model = cs.load(world["ckpt"])
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(OutputRefused, match="config.json.*not written by contextseg"):
        cs.save_pretrained(model, folder)
    assert (folder / "config.json").read_text() == '{"model_type": "bert"}' and not (folder / "model.safetensors").exists()
    (folder / "config.json").unlink()
    cs.save_pretrained(model, folder)
    cs.save_pretrained(model, folder)  # its own files: replaced, as a library call does


def test_metadata_nested_deeply_is_one_line(world, saved, tmp_path):
    """A saved model's config.json or its weights' stored config nested 100,000 levels deep (Python's
    JSON parser would recurse past its limit): one line, checked on the text before parsing."""
    from safetensors.torch import save_file

    from contextseg.engine.checkpoints.saved_model import EMBEDDED_CONFIG

    deep = "[" * 100_000 + "]" * 100_000
    folder = _saved_variant(saved, tmp_path / "deep_metadata", raw_json=(saved["folder"] / "config.json").read_text())
    save_file(dict(saved["weights"]), str(folder / "model.safetensors"), metadata={EMBEDDED_CONFIG: deep})
    run_family(["predict", world["photos"], "--checkpoint", folder, "--out", tmp_path / "out"], 2, ["stored config", "nested deeper than 64"], [folder])
    folder = _saved_variant(saved, tmp_path / "deep_config", raw_json=deep)
    run_family(["predict", world["photos"], "--checkpoint", folder, "--out", tmp_path / "out"], 2, ["config.json", "nested deeper than 64"], [folder])


def test_a_fifo_is_no_missing_file_and_a_dash_name_gets_a_hint(world, tmp_path):
    import os

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    for args in (["eval", "--checkpoint", fifo], ["train", world["config"], f"train.resume={fifo}", f"train.work_dir={tmp_path / 'run'}"],
                 ["predict", fifo, "--checkpoint", world["ckpt"], "--out", tmp_path / "out"]):
        code, text = run_main(args)
        check(code, text, 2, "FIFO")
        assert "does not exist" not in text
    code, text = run_main(["predict", "-x.png", "--checkpoint", world["ckpt"], "--out", tmp_path / "out"])
    check(code, text, 2, "-x.png", "put it after --")


def test_predict_names_apart_two_images_whose_outputs_share_a_name(world, tmp_path):
    """frame.png and frame.jpg (and an image named like another's overlay) used to be refused or to
    share one output: each gets its own files, and a line says how they were named."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    for name in ("street.png", "street.jpg", "x.png", "x_overlay.png"):
        Image.fromarray(rgb).save(photos / name)
    code, text = run_main(["predict", photos, "--checkpoint", world["ckpt"], "--out", tmp_path / "out"])
    check(code, text, 0, "named apart", "street_jpg.png")
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert len(written) == 8 and len(set(written)) == 8, written
    assert {"street_png.png", "street_png_overlay.png", "street_jpg.png", "street_jpg_overlay.png"} <= set(written), written
