"""Cityscapes files that would be silently wrong are refused: a labelIds image holding an id the
official table does not have (a 16-bit 263 cast to 8 bits is 7, road), and ``predict --format
cityscapes`` inputs that are not frames (their predictions would sit unmatched in a submission)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contextseg.cli.main import main
from contextseg.data import DatasetError, prepare_cityscapes, to_cityscapes_label_ids
from contextseg.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE

FRAME = "aachen_000000_000019"


def _label_ids(root: Path, values, dtype=np.uint16, fmt: str = "PNG", frame: str = FRAME) -> Path:
    """``ROOT/gtFine/train/aachen/<frame>_gtFine_labelIds.png`` holding ``values`` (one row)."""
    path = root / "gtFine" / "train" / "aachen" / f"{frame}_gtFine_labelIds.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array([values], dtype=dtype)).save(path, format=fmt)
    return path


def _train_ids(label_ids: Path) -> Path:
    return label_ids.with_name(label_ids.name.replace("_labelIds", "_labelTrainIds"))


def test_prepare_maps_16_bit_label_ids_exactly(tmp_path):
    path = _label_ids(tmp_path, [7, 26, 0, 33, 9], np.uint16)
    assert prepare_cityscapes(tmp_path) == 1
    assert np.asarray(Image.open(_train_ids(path))).tolist() == [[0, 13, 255, 18, 255]]  # road, car, unlabeled, bicycle, parking


@pytest.mark.parametrize("values, dtype, fmt, shown", [
    ([7, 263], np.uint16, "PNG", "263"),  # 263 % 256 = 7: it used to become road
    ([26, 282], np.uint16, "PNG", "282"),  # 282 % 256 = 26: car
    ([7, 65535], np.uint16, "PNG", "65535"),
    ([7, 34, 35, 36, 200], np.uint16, "PNG", "34..36, 200"),
    ([7, 255], np.uint8, "PNG", "255"),  # an 8-bit file is refused too
    ([7, -5, 100000], np.int32, "TIFF", "-5, 100000"),  # 32-bit, named .png: the content decides
])
def test_prepare_refuses_ids_outside_the_official_table(tmp_path, capsys, values, dtype, fmt, shown):
    path = _label_ids(tmp_path, values, dtype, fmt)
    with pytest.raises(DatasetError, match=f"{path.name}.* {shown} that the official Cityscapes label table does not have"):
        prepare_cityscapes(tmp_path)
    assert not _train_ids(path).exists()
    assert main(["data", "prepare", "cityscapes", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and str(path) in err and shown in err, err
    assert not _train_ids(path).exists()


def test_prepare_refuses_an_id_in_a_gap_of_the_table(tmp_path, monkeypatch):
    from contextseg.data import cityscapes

    table = {k: v for k, v in CITYSCAPES_ID_TO_TRAINID.items() if k != 9}  # a table without 'parking'
    monkeypatch.setattr(cityscapes, "CITYSCAPES_ID_TO_TRAINID", table)
    _label_ids(tmp_path, [8, 10], np.uint8, frame="aachen_000000_000001")
    path = _label_ids(tmp_path, [8, 9, 10], np.uint8)
    with pytest.raises(DatasetError, match=f"{path.name} holds label id\\(s\\) 9 that"):
        prepare_cityscapes(tmp_path)


def test_train_ids_out_of_range_are_refused_value_by_value():
    with pytest.raises(ValueError, match="got values 19"):
        to_cityscapes_label_ids(np.array([[19, 255]]))  # a 255 beside it used to let it through, as unlabeled
    with pytest.raises(ValueError, match="got values 256"):
        to_cityscapes_label_ids(np.array([[0, 256]], np.uint16))
    assert to_cityscapes_label_ids(np.array([[0, 18, 255]])).tolist() == [[7, 33, 0]]


@pytest.fixture(scope="module")
def cityscapes_model(tmp_path_factory):
    """A small (untrained) model of the 19 Cityscapes classes, as a saved-model folder."""
    import contextseg as cs

    model = cs.create_model("fcn", num_classes=19, backbone="resnet18d", channels=8, aux_head=False)
    model.meta.update(classes=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE])
    folder = tmp_path_factory.mktemp("cs") / "model"
    cs.save_pretrained(model, folder)
    return folder


def _frame(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("bad", [
    "photo.png",  # any other photo
    "aachen_000000_000019_leftImg8bit.jpg",  # not the frame's PNG
    "aachen_00000_000019_leftImg8bit.png",  # five digits
    "aachen_000000_000019_gtFine_labelIds.png",  # a ground-truth file
    "Aachen_000000_000019_leftImg8bit.png",
    "aachen_000000_000019_leftImg8bit.png.png",
])
def test_predict_format_cityscapes_refuses_other_names(cityscapes_model, tmp_path, capsys, bad):
    inputs = tmp_path / "in"
    _frame(inputs / "aachen" / "aachen_000000_000019_leftImg8bit.png")
    _frame(inputs / "zz" / bad)
    _frame(inputs / "zz" / f"second_{bad}")
    code = main(["predict", str(inputs), "--checkpoint", str(cityscapes_model), "--out", str(tmp_path / "out"), "--format", "cityscapes"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "2 of the 3 input image(s)" in err and str(inputs / "zz" / bad) in err and "<city>_<6 digits>_<6 digits>_leftImg8bit.png" in err, err


def test_predict_format_cityscapes_writes_frames_and_says_no_overlays(cityscapes_model, tmp_path, capsys):
    inputs = tmp_path / "leftImg8bit" / "test"
    for name in ("berlin/berlin_000000_000019_leftImg8bit.png", "bad-honnef/bad-honnef_000001_000002_leftImg8bit.png"):
        _frame(inputs / name)
    out = tmp_path / "submission"
    assert main(["predict", str(inputs), "--checkpoint", str(cityscapes_model), "--out", str(out), "--format", "cityscapes", "--precision", "fp32"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "bad-honnef/bad-honnef_000001_000002_leftImg8bit.png", "berlin/berlin_000000_000019_leftImg8bit.png"]
    said = capsys.readouterr().out
    assert "wrote 2 Cityscapes label-id PNG(s), no overlays," in said and "and overlays" not in said, said

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "cityscapes: the benchmark's label-id PNGs, no overlays" in help_text
    assert "per frame and no overlay" in help_text and "(--format png; cityscapes writes no overlay)" in help_text
    assert "<city>_<6 digits>_<6 digits>_leftImg8bit.png" in help_text
