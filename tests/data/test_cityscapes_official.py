"""Cityscapes as its users check it: the official ``cityscapesscripts`` (a dev dependency) prepares
the train ids of a small generated fixture exactly as ``contextseg data prepare cityscapes`` does,
and its ``evalPixelLevelSemanticLabeling`` scores ``contextseg predict --format cityscapes`` files
with the same class IoUs and mIoU as ``contextseg eval`` on the same model and frames."""

import json
import random
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contextseg.cli.main import main
from contextseg.data import prepare_cityscapes, to_cityscapes_label_ids
from contextseg.data.palettes import CITYSCAPES_CLASSES

cityscapesscripts = pytest.importorskip("cityscapesscripts")
from cityscapesscripts.helpers.labels import id2label, labels as OFFICIAL_LABELS  # noqa: E402
from cityscapesscripts.preparation.json2labelImg import json2labelImg  # noqa: E402

H, W = 64, 128
FRAMES = {"train": [("aachen", 0, 19), ("aachen", 0, 20)], "val": [("frankfurt", 0, 294), ("frankfurt", 1, 7), ("lindau", 0, 19)]}
# every label the annotators draw, the ones the train ids ignore included (parking, rail track,
# guard rail, bridge, tunnel, polegroup, caravan, trailer, ego vehicle, ...) and license plate (id -1)
DRAWN = [label.name for label in OFFICIAL_LABELS if label.name not in ("unlabeled",)]


def _polygons(rng: random.Random) -> dict:
    objects = []
    for _ in range(40):
        x, y = rng.uniform(-10, W), rng.uniform(-10, H)
        w, h = rng.uniform(4, 50), rng.uniform(3, 30)
        objects.append({"label": rng.choice(DRAWN), "polygon": [[x, y], [x + w, y + rng.uniform(-3, 3)], [x + w, y + h], [x + rng.uniform(-5, 5), y + h]]})
    return {"imgHeight": H, "imgWidth": W, "objects": objects}


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    """ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png and ROOT/gtFine/<split>/<city>/ polygons,
    labelIds drawn by cityscapesscripts, and its own trainIds beside (``*_official_trainIds.png``)."""
    root = tmp_path_factory.mktemp("cityscapes")
    rng = random.Random(0)
    for split, frames in FRAMES.items():
        for city, seq, frame in frames:
            stem = f"{city}_{seq:06d}_{frame:06d}"
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            gt = root / "gtFine" / split / city
            gt.mkdir(parents=True, exist_ok=True)
            polygons = gt / f"{stem}_gtFine_polygons.json"
            polygons.write_text(json.dumps(_polygons(rng)))
            json2labelImg(str(polygons), str(gt / f"{stem}_gtFine_labelIds.png"), "ids")
            json2labelImg(str(polygons), str(gt / f"{stem}_official_trainIds.png"), "trainIds")
            blocks = np.random.default_rng(frame).integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8)
            image = np.kron(blocks, np.ones((8, 8, 1), np.uint8))  # blocks of colour: varied features, varied predictions
            Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
    return root


def test_prepare_writes_the_official_train_ids(cityscapes):
    written = prepare_cityscapes(cityscapes)
    assert written == 5
    for official in sorted(cityscapes.glob("gtFine/*/*/*_official_trainIds.png")):
        ours = official.with_name(official.name.replace("_official_trainIds.png", "_gtFine_labelTrainIds.png"))
        theirs = np.asarray(Image.open(official))
        assert {int(v) for v in np.unique(np.asarray(Image.open(ours.with_name(ours.name.replace("labelTrainIds", "labelIds")))))} & {9, 10, 14, 15, 16, 18, 29, 30}
        assert np.array_equal(np.asarray(Image.open(ours)), theirs), ours.name


def test_label_ids_are_the_official_table():
    # train id k -> the label whose trainId is k, as cityscapesscripts' table says; 255 -> unlabeled (0)
    table = {label.trainId: label.id for label in OFFICIAL_LABELS if 0 <= label.trainId < 255}
    train_ids = np.array([list(range(19)) + [255]])
    assert to_cityscapes_label_ids(train_ids).tolist() == [[table[k] for k in range(19)] + [0]]
    assert [id2label[table[k]].name for k in range(19)] == list(CITYSCAPES_CLASSES)
    assert to_cityscapes_label_ids(torch.tensor([[0, 18]])).tolist() == [[7, 33]]
    with pytest.raises(ValueError, match="0..18"):
        to_cityscapes_label_ids(np.array([[19]]))


def _official_scores(predictions, ground_truths) -> dict:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    results = official.evaluateImgLists([str(p) for p in predictions], [str(g) for g in ground_truths], args)
    return {"classes": results["classScores"], "mIoU": results["averageScoreClasses"]}


def test_predict_format_cityscapes_scores_as_contextseg_eval(cityscapes, tmp_path, monkeypatch, capsys):
    prepare_cityscapes(cityscapes)
    config = {
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 8, "channels": 16, "aux_head": False, "pretrained_backbone": None},
        "data": {"name": "cityscapes", "root": str(cityscapes), "base_size": [W, H], "crop_size": [H, W], "num_workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "lr": 0.01, "log_interval": 1, "eval_interval": 2, "work_dir": str(tmp_path / "run"),
                  "precision": "fp32", "channels_last": False},
    }
    (tmp_path / "cs.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "cs.yaml")]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    weight = state["model"]["decode_head.conv_seg.weight"]  # a classifier that spreads the pixels over many classes
    state["model"]["decode_head.conv_seg.weight"] = 3 * torch.randn(weight.shape, generator=generator)
    state["model"]["decode_head.conv_seg.bias"].zero_()
    torch.save(state, checkpoint)

    out = tmp_path / "submission"
    assert main(["predict", str(cityscapes / "leftImg8bit" / "val"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--format", "cityscapes", "--precision", "fp32"]) == 0
    predictions = sorted(out.rglob("*.png"))
    assert [p.relative_to(out).as_posix() for p in predictions] == [
        "frankfurt/frankfurt_000000_000294_leftImg8bit.png", "frankfurt/frankfurt_000001_000007_leftImg8bit.png", "lindau/lindau_000000_000019_leftImg8bit.png"]
    for p in predictions:
        with Image.open(p) as image:
            assert image.mode == "L" and image.size == (W, H)
            assert set(np.unique(np.asarray(image)).tolist()) <= {label.id for label in OFFICIAL_LABELS if 0 <= label.trainId < 255}
    assert len({int(v) for p in predictions for v in np.unique(np.asarray(Image.open(p)))}) >= 5  # many classes predicted

    ground_truths = [cityscapes / "gtFine" / "val" / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png") for p in predictions]
    theirs = _official_scores(predictions, ground_truths)
    assert main(["eval", "--checkpoint", str(checkpoint), "--json", str(tmp_path / "ours.json"), "--precision", "fp32", "--mode", "whole"]) == 0
    ours = json.loads((tmp_path / "ours.json").read_text())
    iou = dict(zip(CITYSCAPES_CLASSES, ours["IoU"]))
    for name in CITYSCAPES_CLASSES:
        a, b = theirs["classes"][name], iou[name]
        assert (np.isnan(a) and (b is None or np.isnan(b))) or abs(a - b) <= 1e-6, (name, a, b)
    assert abs(theirs["mIoU"] - ours["mIoU"]) <= 1e-6


def test_format_cityscapes_refuses_another_model(tmp_path, capsys):
    import contextseg as cs

    model = cs.create_model("fcn", num_classes=3, backbone="resnet18d", channels=8, aux_head=False)
    model.meta.update(classes=["a", "b", "c"], palette=[[0, 0, 0]] * 3)
    cs.save_pretrained(model, tmp_path / "model")
    frame = tmp_path / "aachen_000000_000019_leftImg8bit.png"  # a frame: the model is what is refused
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frame)
    code = main(["predict", str(frame), "--checkpoint", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--format", "cityscapes"])
    assert code == 2 and not (tmp_path / "out").exists()
    assert "19 Cityscapes classes" in capsys.readouterr().err
