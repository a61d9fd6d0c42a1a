import os
from pathlib import Path

import numpy as np
import pytest
import torch

from contextseg.data import (
    DATASETS, DatasetError, build_dataset, check_dataset, colorize, prepare_cityscapes,
)
from contextseg.data.palettes import CITYSCAPES_ID_TO_TRAINID

from .conftest import ramp_mask, write_image, write_mask

CAMVID_ROOT = Path(os.environ.get("CONTEXTSEG_CAMVID", Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid"))  # or ../shared beside the repo


# -- fixtures in the real layouts ---------------------------------------------------------------------
def make_ade(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split, stems in (("training", ["ADE_train_1", "ADE_train_2"]), ("validation", ["ADE_val_1"])):
        for k, stem in enumerate(stems):
            write_image(base / "images" / split / f"{stem}.jpg", 6, 8, seed=k)
            write_mask(base / "annotations" / split / f"{stem}.png", ramp_mask(6, 8, [0, 1, 2, 150]))
    return root


def make_cityscapes(root: Path) -> Path:
    for split, city, n in (("train", "aachen", 2), ("val", "lindau", 1)):
        for k in range(n):
            name = f"{city}_{k:06d}_000019"
            write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", 4, 35, seed=k)
            ids = np.tile(np.arange(35, dtype=np.uint8)[None, :] % 34, (4, 1))  # every id of the table (ids beyond it are refused)
            write_mask(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", ids)
    return root


def make_pascal(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2010"
    ids = ["2008_000002", "2008_000003"]
    for k, sample_id in enumerate(ids):
        write_image(voc / "JPEGImages" / f"{sample_id}.jpg", 5, 7, seed=k)
        write_mask(voc / "SegmentationClassContext" / f"{sample_id}.png", ramp_mask(5, 7, [0, 1, 59, 255]))
    (voc / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationContext" / "train.txt").write_text("\n".join(ids) + "\n")
    (voc / "ImageSets" / "SegmentationContext" / "val.txt").write_text(ids[0] + "\n")
    return root


def make_camvid(root: Path) -> Path:
    for split, n in (("train", 3), ("val", 1)):
        for k in range(n):
            write_image(root / split / f"0001TP_{k:06d}.png", 6, 9, seed=k)
            write_mask(root / f"{split}annot" / f"0001TP_{k:06d}.png", ramp_mask(6, 9, [0, 3, 10, 11]))
    return root


def make_folder(root: Path, palette: bool = True) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    if palette:
        (root / "palette.txt").write_text("0 0 0\n128 64 128\n0 0 142\n")
    for split, n in (("train", 2), ("val", 1)):
        for k in range(n):
            write_image(root / "images" / split / f"img{k}.png", 5, 6, seed=k)
            write_mask(root / "masks" / split / f"img{k}.png", ramp_mask(5, 6, [0, 1, 2, 255]))
    return root


# -- conventions ---------------------------------------------------------------------------------------
def test_registry_and_unknown_name(tmp_path):
    assert list(DATASETS) == ["ade20k", "cityscapes", "pascal_context", "camvid", "folder", "synthetic"]
    with pytest.raises(ValueError, match="ade20k.*cityscapes.*pascal_context.*camvid.*folder.*synthetic"):
        build_dataset("coco", tmp_path, "train")


def test_ade20k(tmp_path):
    root = make_ade(tmp_path)
    train = build_dataset("ade20k", root, "train")
    assert len(train) == 2 and train.num_classes == 150 and len(train.palette) == 150
    assert train.base_size == (2048, 512) and train.ignore_index == 255
    assert train.classes[:3] == ("wall", "building", "sky") and train.classes[-1] == "flag"
    image, mask = train[0]
    assert image.shape == (3, 6, 8) and image.dtype == torch.uint8 and mask.dtype == torch.int64
    assert mask[0, :4].tolist() == [255, 0, 1, 149]  # reduce_zero_label: 0 -> 255, k -> k - 1
    # the ADEChallengeData2016 folder itself is accepted as root, and the long split names too
    val = build_dataset("ade20k", root / "ADEChallengeData2016", "validation")
    assert len(val) == 1
    assert check_dataset("ade20k", root) == []


def test_cityscapes_prepare_and_load(tmp_path):
    root = make_cityscapes(tmp_path)
    with pytest.raises(DatasetError, match="prepare cityscapes"):
        build_dataset("cityscapes", root, "train")
    assert prepare_cityscapes(root) == 3
    assert prepare_cityscapes(root) == 0  # nothing left to write
    written = sorted((root / "gtFine" / "train" / "aachen").glob("*_gtFine_labelTrainIds.png"))
    assert len(written) == 2
    dataset = build_dataset("cityscapes", root, "train")
    assert len(dataset) == 2 and dataset.num_classes == 19 and dataset.base_size == (2048, 1024)
    row = dataset[0][1][0].tolist()
    expected = [CITYSCAPES_ID_TO_TRAINID[i] for i in range(34)] + [255]  # id 0 again: unlabeled
    assert row == expected
    assert row[7] == 0 and row[8] == 1 and row[26] == 13 and row[33] == 18 and row[0] == 255
    assert sorted(set(row) - {255}) == list(range(19))
    assert check_dataset("cityscapes", root) == []


def test_pascal_context_59_and_60(tmp_path):
    root = make_pascal(tmp_path)
    d59 = build_dataset("pascal_context", root, "train")
    assert d59.num_classes == 59 and len(d59.palette) == 59 and d59.base_size == (520, 520)
    assert d59[0][1][0, :4].tolist() == [255, 0, 58, 255]
    d60 = build_dataset("pascal_context", root, "train", reduce_zero_label=False)
    assert d60.num_classes == 60 and d60.classes[0] == "background" and d60.classes[1:] == d59.classes
    assert d60.palette[1:] == d59.palette
    assert d60[0][1][0, :4].tolist() == [0, 1, 59, 255]
    assert len(build_dataset("pascal_context", root / "VOCdevkit", "val")) == 1
    # 60 is no class in either variant
    write_mask(root / "VOCdevkit/VOC2010/SegmentationClassContext/2008_000003.png", ramp_mask(5, 7, [60]))
    with pytest.raises(DatasetError, match=r"2008_000003\.png.*60"):
        d60[1]


def test_camvid_fixture(tmp_path):
    root = make_camvid(tmp_path)
    dataset = build_dataset("camvid", root, "train")
    assert len(dataset) == 3 and dataset.base_size == (480, 360)
    assert dataset.classes == (
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
        "Pedestrian", "Bicyclist",
    )
    assert dataset.palette[0] == (128, 128, 128) and dataset.palette[4] == (60, 40, 222)
    assert dataset[1][1][0, :4].tolist() == [0, 3, 10, 255]
    assert len(build_dataset("camvid", root, "val")) == 1
    assert check_dataset("camvid", root) == []  # the absent test split is no problem
    assert dataset.load_mask(1).tolist() == dataset[1][1].tolist()


def test_folder(tmp_path):
    root = make_folder(tmp_path / "f")
    dataset = build_dataset("folder", root, "train")
    assert dataset.classes == ("background", "road", "car") and dataset.base_size is None
    assert dataset.palette == [(0, 0, 0), (128, 64, 128), (0, 0, 142)]
    image, mask = dataset[0]
    assert image.shape == (3, 5, 6) and mask[0, :4].tolist() == [0, 1, 2, 255]
    assert build_dataset("folder", root, "val", base_size=(64, 32)).base_size == (64, 32)
    # without palette.txt: a deterministic palette of distinct colours
    plain = make_folder(tmp_path / "g", palette=False)
    a, b = build_dataset("folder", plain, "train"), build_dataset("folder", plain, "train")
    assert a.palette == b.palette and len(set(a.palette)) == 3
    (plain / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="classes.txt"):
        build_dataset("folder", plain, "train")


def test_colorize():
    mask = np.array([[0, 1], [2, 255]])
    out = colorize(mask, [(10, 20, 30), (40, 50, 60), (70, 80, 90)])
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == [40, 50, 60] and out[1, 1].tolist() == [0, 0, 0]
    assert colorize(torch.tensor(mask), [(1, 1, 1)] * 3)[1, 0].tolist() == [1, 1, 1]


# -- errors --------------------------------------------------------------------------------------------
def test_missing_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("ade20k", "cityscapes", "pascal_context", "camvid", "folder"):
        with pytest.raises(FileNotFoundError, match="nowhere") as err:
            build_dataset(name, missing, "train")
        assert "expected layout" in str(err.value)
        problems = check_dataset(name, missing)
        assert len(problems) == 1 and "nowhere" in problems[0]


def test_image_without_mask(tmp_path):
    root = make_camvid(tmp_path)
    write_image(root / "train" / "0001TP_000099.png", 6, 9)
    with pytest.raises(DatasetError, match=r"0001TP_000099\.png.*no mask"):
        build_dataset("camvid", root, "train")
    root = make_ade(tmp_path / "ade")
    (root / "ADEChallengeData2016/annotations/training/ADE_train_2.png").unlink()
    with pytest.raises(DatasetError, match="ADE_train_2"):
        build_dataset("ade20k", root, "train")


def test_size_mismatch(tmp_path):
    root = make_folder(tmp_path)
    write_mask(root / "masks" / "train" / "img1.png", np.zeros((4, 6), np.uint8))
    dataset = build_dataset("folder", root, "train")
    dataset[0]
    with pytest.raises(DatasetError, match=r"img1\.png.*6x4.*6x5"):
        dataset[1]


def test_bad_mask_value(tmp_path):
    root = make_camvid(tmp_path)
    write_mask(root / "trainannot" / "0001TP_000002.png", ramp_mask(6, 9, [0, 12, 40]))
    dataset = build_dataset("camvid", root, "train")
    with pytest.raises(DatasetError) as err:
        dataset[2]
    message = str(err.value)
    assert "0001TP_000002.png" in message and "12, 40" in message and "0..11, 255" in message
    root = make_ade(tmp_path / "ade")
    write_mask(root / "ADEChallengeData2016/annotations/training/ADE_train_1.png", ramp_mask(6, 8, [151]))
    with pytest.raises(DatasetError, match=r"ADE_train_1\.png.*151.*0\.\.150"):
        build_dataset("ade20k", root, "train")[0]


def test_unreadable_and_wrong_mode(tmp_path):
    root = make_camvid(tmp_path)
    (root / "train" / "0001TP_000001.png").write_bytes(b"not a png")
    dataset = build_dataset("camvid", root, "train")
    with pytest.raises(DatasetError, match=r"cannot read image file .*0001TP_000001\.png"):
        dataset[1]
    write_image(root / "trainannot" / "0001TP_000000.png", 6, 9)  # an RGB mask
    with pytest.raises(DatasetError, match=r"0001TP_000000\.png.*mode 'RGB'"):
        dataset[0]


def test_check_lists_every_problem(tmp_path):
    root = make_camvid(tmp_path)
    write_image(root / "train" / "orphan.png", 6, 9)  # no mask
    write_mask(root / "trainannot" / "0001TP_000000.png", np.zeros((5, 9), np.uint8))  # wrong size
    write_mask(root / "trainannot" / "0001TP_000001.png", ramp_mask(6, 9, [0, 99]))  # bad value
    (root / "val" / "0001TP_000000.png").write_bytes(b"garbage")  # unreadable, other split
    problems = check_dataset("camvid", root)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "orphan.png" in text and "no mask" in text
    assert "0001TP_000000.png" in text and "same size" in text
    assert "99" in text and "0001TP_000001.png" in text
    assert "cannot read image file" in text
    assert check_dataset("camvid", root, split="val") == [problems[-1]]
    # an existing but empty split is reported too
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "trainannot").mkdir()
    assert any("no samples" in p for p in check_dataset("camvid", empty))


def test_orphan_masks_are_reported_and_shared_problems_once(tmp_path):
    root = make_folder(tmp_path / "ds")
    write_mask(root / "masks" / "train" / "lonely.png", ramp_mask(5, 6, [0, 1]))
    problems = check_dataset("folder", root)
    assert problems == [f"mask {root / 'masks' / 'train' / 'lonely.png'} has no image (no image of the 'train' split maps to it)"]
    build_dataset("folder", root, "train")  # training is not refused for an unused mask
    (root / "classes.txt").unlink()  # a problem of every split is listed once
    problems = check_dataset("folder", root)
    assert len(problems) == 1 and "classes.txt" in problems[0]


def test_sixteen_bit_grayscale_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from contextseg.data.base import read_image

    values = np.array([[0, 257, 32896], [65535, 1000, 50000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = read_image(tmp_path / "g16.png")
    expected = np.round(values / 257).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)


def test_median_frequency_weights_by_hand(tmp_path):
    from contextseg.data.base import median_frequency_weights

    root = tmp_path / "ds"
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\nc\n")
    one = np.zeros((4, 4), np.uint8)
    one[0] = 1  # class 0: 12 px, class 1: 4 px
    two = np.zeros((4, 4), np.uint8)
    two[2:] = 2  # class 0: 8 px, class 2: 8 px
    two[0, 0] = 255  # ignored: counts for neither class
    for k, mask in enumerate((one, two)):
        write_image(root / "images" / "train" / f"{k}.png", 4, 4)
        write_mask(root / "masks" / "train" / f"{k}.png", mask)
    dataset = build_dataset("folder", root, "train")
    # f = pixels of c / pixels of the images where c occurs: [19/32, 4/16, 8/16]; median 0.5
    f = np.array([19 / 32, 4 / 16, 8 / 16])
    assert np.allclose(median_frequency_weights(dataset), 0.5 / f, atol=1e-4)
    assert np.allclose(median_frequency_weights(dataset, 0.5), np.sqrt(0.5 / f), atol=1e-4)


# -- the real CamVid -----------------------------------------------------------------------------------
@pytest.mark.skipif(not CAMVID_ROOT.is_dir(), reason="real CamVid not found: set CONTEXTSEG_CAMVID to its folder")
def test_real_camvid():
    train = build_dataset("camvid", CAMVID_ROOT, "train")
    val = build_dataset("camvid", CAMVID_ROOT, "val")
    assert len(train) == 367 and len(val) == 101
    for dataset in (train, val):
        for i in (0, len(dataset) // 2, len(dataset) - 1):
            image, mask = dataset[i]
            assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
            values = set(mask.unique().tolist())
            assert values <= set(range(11)) | {255}
    # every mask: same size as its image, values within 0..10 or 255 after mapping
    for dataset in (train, val):
        counts = torch.zeros(256, dtype=torch.long)
        for i in range(len(dataset)):
            mask = dataset.load_mask(i)
            assert mask.shape == (360, 480)
            counts += torch.bincount(mask.view(-1), minlength=256)
        assert set(counts.nonzero().view(-1).tolist()) == set(range(11)) | {255}
