import time

import numpy as np
import pytest
import torch

from contextseg.data import build_dataset, export_synthetic
from contextseg.data.synthetic import (
    BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY, VEGETATION, SyntheticStreetScenes,
)

N = 64


@pytest.fixture(scope="module")
def scenes():
    """(image, label, layout) of the first N training scenes at the default size."""
    dataset = SyntheticStreetScenes(split="train")
    return dataset, [dataset.render(i) for i in range(N)]


def test_defaults_and_classes():
    train = build_dataset("synthetic", None, "train")
    assert len(train) == 512 and len(build_dataset("synthetic", None, "val")) == 128
    assert train.classes == (
        "sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person", "sign",
    )
    assert train.num_classes == 9 and len(train.palette) == 9 and train.ignore_index == 255
    assert train.base_size == (256, 128)
    image, mask = train[0]
    assert image.shape == (3, 128, 256) and image.dtype == torch.uint8
    assert mask.shape == (128, 256) and mask.dtype == torch.int64
    small = build_dataset("synthetic", None, "test", size=(64, 96), length=3, seed=2)
    assert len(small) == 3 and small[2][0].shape == (3, 64, 96) and small.base_size == (96, 64)
    with pytest.raises(IndexError):
        small[3]
    with pytest.raises(ValueError, match="split"):
        build_dataset("synthetic", None, "training")


def test_deterministic_per_index_and_order():
    a = SyntheticStreetScenes(split="val", length=8)
    forward = [a[i] for i in range(8)]
    b = SyntheticStreetScenes(split="val", length=8)
    backward = {i: b[i] for i in reversed(range(8))}
    for i in range(8):
        assert torch.equal(forward[i][0], backward[i][0]) and torch.equal(forward[i][1], backward[i][1])
    assert torch.equal(a[3][0], a[3][0])
    assert not torch.equal(forward[0][0], forward[1][0])
    assert not torch.equal(forward[0][1], forward[1][1])
    # split and seed change the scenes
    assert not torch.equal(SyntheticStreetScenes(split="train", length=8)[0][0], forward[0][0])
    assert not torch.equal(SyntheticStreetScenes(split="val", length=8, seed=1)[0][0], forward[0][0])


def test_same_scenes_in_worker_processes():
    dataset = SyntheticStreetScenes(split="train", size=(48, 64), length=6)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    for i, (image, mask) in enumerate(loader):
        assert torch.equal(image, dataset[i][0]) and torch.equal(mask, dataset[i][1])


def test_values_and_all_classes(scenes):
    _, rendered = scenes
    seen = np.zeros(256, bool)
    for _, label, _ in rendered:
        seen[np.unique(label)] = True
    assert np.flatnonzero(seen).tolist() == list(range(9))


def test_horizon_sky_and_ground(scenes):
    dataset, rendered = scenes
    h = dataset.size[0]
    for image, label, layout in rendered:
        horizon = layout["horizon"]
        assert 0.3 * h <= horizon <= 0.55 * h
        rows = np.arange(h)[:, None]
        assert (rows[np.any(label == SKY, axis=1)] < horizon).all(), "sky below the horizon"
        ground = np.any((label == ROAD) | (label == SIDEWALK), axis=1)
        assert (rows[ground] >= horizon).all(), "road or sidewalk above the horizon"
        assert (label[horizon:] != SKY).all()
        # buildings rise from the horizon into the sky region
        building_rows = np.flatnonzero(np.any(label == BUILDING, axis=1))
        if building_rows.size:
            assert building_rows.max() < horizon
        veg_rows = np.flatnonzero(np.any(label == VEGETATION, axis=1))
        if veg_rows.size:
            assert veg_rows.max() < horizon + 0.2 * (h - horizon)
        assert layout["has_road"] == bool((label == ROAD).any())
        assert layout["has_sidewalk"] == bool((label == SIDEWALK).any())


def test_cooccurrence(scenes):
    _, rendered = scenes
    kinds = set()
    for _, label, layout in rendered:
        present = set(np.unique(label).tolist())
        kinds.add((layout["has_road"], layout["has_sidewalk"]))
        if CAR in present:
            assert ROAD in present
        if PERSON in present:
            assert SIDEWALK in present
        if SIGN in present:
            assert POLE in present
        if not layout["has_sidewalk"]:
            assert not present & {PERSON, POLE, SIGN}
        if not layout["has_road"]:
            assert CAR not in present
    assert kinds == {(True, True), (False, True), (True, False)}


def test_cars_stand_on_road(scenes):
    _, rendered = scenes
    checked = 0
    for _, label, layout in rendered:
        # every bottom edge of a car region rests on road (or on something standing in front)
        car = label[:-1] == CAR
        below = label[1:]
        edge = car & (below != CAR)
        assert np.isin(below[edge], [ROAD, PERSON, POLE]).all()
        assert not (label[-1] == CAR).any()
        for top, bottom, left, right in layout["cars"]:
            assert any(t <= bottom < b for t, b in layout["road_rows"])
            feet = below[bottom - 1, left:right][car[bottom - 1, left:right]]
            checked += int((feet == ROAD).any())
    assert checked >= 30


def test_persons_stand_on_sidewalk(scenes):
    _, rendered = scenes
    checked = 0
    for _, label, layout in rendered:
        for top, bottom, left, right in layout["persons"]:
            assert any(t <= bottom < b for t, b in layout["sidewalk_rows"])
            feet = label[bottom - 1, left:right] == PERSON
            ground = label[bottom, left:right][feet]
            assert np.isin(ground, [SIDEWALK, PERSON, POLE, CAR]).all()
            checked += int((ground == SIDEWALK).any())
    assert checked >= 30


def test_poles_are_thin_tall_and_on_sidewalk(scenes):
    dataset, rendered = scenes
    h = dataset.size[0]
    n_poles = 0
    for _, label, layout in rendered:
        # no horizontal run of pole pixels is wider than 4 px
        pole = np.pad(label == POLE, ((0, 0), (1, 1)))
        starts = np.flatnonzero(np.diff(pole.astype(np.int8), axis=1).ravel() == 1)
        ends = np.flatnonzero(np.diff(pole.astype(np.int8), axis=1).ravel() == -1)
        assert ((ends - starts) <= 4).all()
        for top, bottom, left, right in layout["poles"]:
            n_poles += 1
            assert 2 <= right - left <= 4
            assert bottom - top >= 0.4 * h, "poles run from the ground high up into the image"
            assert any(t <= bottom - 1 < b for t, b in layout["sidewalk_rows"])
            assert (label[top : top + 5, left:right] == POLE).all()
    assert n_poles >= 20


def test_signs_sit_on_top_of_poles(scenes):
    _, rendered = scenes
    n_signs = 0
    for _, label, layout in rendered:
        for sign in layout["signs"]:
            top, bottom, left, right = sign["box"]
            p_top, _, p_left, p_right = layout["poles"][sign["pole"]]
            assert bottom == p_top and left <= p_left and p_right <= right
            assert (label[bottom - 1, p_left:p_right] == SIGN).all()
            assert (label[bottom, p_left:p_right] == POLE).all()
            n_signs += 1
        if (label == SIGN).any():
            assert layout["signs"]
    assert n_signs >= 10


def test_appearance_is_confusable_but_not_random(scenes):
    """Class mean colours differ, yet greys recur: per-image colours of road overlap sidewalk and
    building, overcast sky overlaps building, poles overlap buildings."""
    _, rendered = scenes
    pixels = {c: [] for c in range(9)}
    for image, label, _ in rendered[:32]:
        for c in range(9):
            pixels[c].append(image[label == c].astype(np.float32))
    means = {c: np.concatenate(v).mean(0) for c, v in pixels.items()}
    for a in range(9):
        for b in range(a + 1, 9):
            assert np.abs(means[a] - means[b]).max() > 3, (a, b)
    per_image = {c: np.stack([p.mean(0) for p in v if len(p)]) for c, v in pixels.items()}
    for a, b in ((ROAD, SIDEWALK), (ROAD, BUILDING), (SKY, BUILDING), (POLE, BUILDING)):
        lo, hi = per_image[b].min(0), per_image[b].max(0)
        inside = ((per_image[a] >= lo) & (per_image[a] <= hi)).all(1)
        assert inside.mean() > 0.2, f"colours of class {a} never look like class {b}"


def test_render_time():
    dataset = SyntheticStreetScenes(split="train", length=40)
    dataset.render(0)
    start = time.perf_counter()
    for i in range(1, 21):
        dataset.render(i)
    per_image = (time.perf_counter() - start) / 20
    assert per_image < 0.05, f"{per_image * 1000:.1f} ms per image"


def test_export_round_trip(tmp_path):
    out = export_synthetic(tmp_path / "synth", splits=("train", "val"), size=(48, 80), length=3, seed=5)
    for split in ("train", "val"):
        folder = build_dataset("folder", out, split)
        synthetic = build_dataset("synthetic", None, split, size=(48, 80), length=3, seed=5)
        assert folder.classes == synthetic.classes
        assert folder.palette == synthetic.palette
        assert len(folder) == 3
        for i in range(3):
            assert torch.equal(folder[i][0], synthetic[i][0])
            assert torch.equal(folder[i][1], synthetic[i][1])
