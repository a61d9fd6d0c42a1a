"""Synthetic street scenes: a deterministic generator with the structure context methods exploit.

Each scene has a horizon in [0.3, 0.55] H (sky above, ground below), buildings standing on it and
vegetation near it, and one of three ground layouts: a street (far sidewalk, road, optional near
sidewalk), a pedestrian zone (sidewalk only) or a road alone. Cars stand on road, persons on
sidewalk, poles (2-4 px wide, reaching high into the image) on sidewalk, signs on top of poles; road
markings and curbs run long and horizontal. Colours come from overlapping per-class distributions
under a per-image illumination gain and colour cast, with per-region texture noise, so the layout
(height, co-occurrence, shape) is needed on top of local colour. Image ``i`` of a split is drawn
from ``np.random.default_rng((seed, split_id, i))`` and is therefore independent of access order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import SegmentationDataset
from .io import atomic_write
from .folder import write_class_files
from .palettes import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE

SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, POLE, CAR, PERSON, SIGN = range(9)
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 512, "val": 128, "test": 128}
SCENES = ("street", "pedestrian", "road")
SCENE_PROBS = (0.5, 0.25, 0.25)

# Per class: candidate material colours (RGB means); one is picked per region and jittered. Greys
# recur across sky (overcast), building, road, sidewalk, pole and car on purpose.
MATERIALS = {
    SKY: [(95, 145, 205), (172, 176, 182), (140, 165, 195)],
    BUILDING: [(125, 125, 128), (165, 150, 125), (135, 85, 65), (78, 84, 96), (182, 178, 168)],
    ROAD: [(82, 82, 88), (104, 103, 106), (122, 120, 117)],
    SIDEWALK: [(150, 146, 140), (128, 125, 122), (155, 122, 108)],
    VEGETATION: [(65, 105, 45), (45, 72, 40), (98, 118, 62), (82, 92, 72)],
    POLE: [(112, 112, 116), (62, 68, 62), (46, 48, 54)],
    CAR: [(150, 152, 158), (42, 42, 47), (205, 205, 208), (155, 38, 36), (42, 62, 135), (108, 108, 114)],
    PERSON: [(52, 52, 62), (122, 44, 42), (44, 62, 104), (150, 140, 118), (92, 92, 92)],
    SIGN: [(185, 42, 40), (42, 76, 165), (212, 188, 52), (208, 208, 208)],
}
COLOR_JITTER = 12.0
# Fine (per pixel) and coarse (8x8 blotches) texture amplitude per class.
FINE_NOISE = np.array([2.5, 7, 6, 8, 16, 4, 5, 7, 4], dtype=np.float32)
COARSE_NOISE = np.array([3, 6, 5, 6, 14, 2, 2, 3, 2], dtype=np.float32)
MARKING_COLORS = [(205, 205, 198), (198, 178, 72)]
CURB_COLORS = [(172, 168, 160), (98, 98, 100)]
WINDOW_COLORS = [(48, 58, 72), (88, 104, 122), (196, 192, 160)]
SKIN_COLORS = [(202, 160, 130), (142, 102, 78)]
TYRE_COLOR = (28, 28, 30)


class _Canvas:
    """Label map plus a region map; each region has its own colour and texture class."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.h, self.w, self.rng = height, width, rng
        self.label = np.zeros((height, width), np.uint8)
        self.region = np.zeros((height, width), np.int32)
        self.colors: list[tuple[float, float, float]] = []
        self.texture: list[int] = []

    def new_region(self, cls: int, color=None) -> int:
        if color is None:
            materials = MATERIALS[cls]
            color = materials[self.rng.integers(len(materials))]
        jitter = self.rng.normal(0.0, COLOR_JITTER, 3)
        self.colors.append(tuple(np.asarray(color, np.float64) + jitter))
        self.texture.append(cls)
        return len(self.colors) - 1

    def _window(self, y0, y1, x0, x1):
        y0, y1 = max(int(y0), 0), min(int(y1), self.h)
        x0, x1 = max(int(x0), 0), min(int(x1), self.w)
        return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None

    def paint(self, win, keep: np.ndarray | None, cls: int, region: int) -> None:
        y0, y1, x0, x1 = win
        if keep is None:
            self.label[y0:y1, x0:x1] = cls
            self.region[y0:y1, x0:x1] = region
        else:
            self.label[y0:y1, x0:x1][keep] = cls
            self.region[y0:y1, x0:x1][keep] = region

    def rect(self, y0, y1, x0, x1, cls: int, region: int) -> None:
        win = self._window(y0, y1, x0, x1)
        if win:
            self.paint(win, None, cls, region)

    def ellipse(self, cy, cx, ry, rx, cls: int, region: int, y_max=None) -> None:
        bottom = np.ceil(cy + ry) + 1 if y_max is None else min(np.ceil(cy + ry) + 1, y_max)
        win = self._window(np.floor(cy - ry), bottom, np.floor(cx - rx), np.ceil(cx + rx) + 1)
        if win:
            yy, xx = np.ogrid[win[0]:win[1], win[2]:win[3]]
            inside = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
            self.paint(win, inside, cls, region)

    def render(self, gain: float, cast: np.ndarray, horizon: int) -> np.ndarray:
        rng, h, w = self.rng, self.h, self.w
        colors = np.asarray(self.colors, np.float32)
        texture = np.asarray(self.texture)
        image = colors[self.region]
        fine = rng.standard_normal((h, w, 1), dtype=np.float32) + 0.5 * rng.standard_normal((h, w, 3), dtype=np.float32)
        image += fine * FINE_NOISE[texture][self.region][..., None]
        coarse = rng.standard_normal(((h + 7) // 8, (w + 7) // 8), dtype=np.float32)
        coarse = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w]
        image += (coarse * COARSE_NOISE[texture][self.region])[..., None]
        # the sky brightens towards the horizon
        rows = np.minimum(np.arange(h, dtype=np.float32) / max(horizon, 1), 1.0)
        image += ((self.label == SKY) * (28.0 * rows)[:, None])[..., None]
        image *= gain * cast
        return np.clip(image, 0, 255).astype(np.uint8)


class SyntheticStreetScenes(SegmentationDataset):
    """Deterministic synthetic street scenes, 9 classes, no files.

    Args:
        root: ignored (nothing on disk).
        split: ``train``, ``val`` or ``test`` (different seeds per split).
        size: (H, W) of every image.
        length: number of images (default: train 512, val 128, test 128).
        seed: global seed; image ``i`` of a split depends only on (seed, split, i).
    """

    name = "synthetic"
    classes = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE
    splits = ("train", "val", "test")

    def __init__(self, root=None, split="train", transforms=None, *, size=(128, 256), length=None, seed=0):
        super().__init__(split=split, transforms=transforms)
        if split not in SPLIT_IDS:
            raise ValueError(f"synthetic split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
        self.size = (int(size[0]), int(size[1]))
        if min(self.size) < 32:
            raise ValueError(f"synthetic size must be at least 32x32, got {self.size}")
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        self.seed = int(seed)
        self.base_size = (max(self.size), min(self.size))

    def __len__(self) -> int:
        return self.length

    def image_sizes(self, limit: int = 1000) -> list[tuple[int, int]]:
        return [self.size]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label, _ = self.render(index)
        return (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            torch.from_numpy(label.astype(np.int64)),
        )

    def layout(self, index: int) -> dict:
        """The scene's structure: ``horizon`` (first ground row), ``scene``, ``has_road``,
        ``has_sidewalk``, ``road_rows``/``sidewalk_rows`` (lists of ``(top, bottom)`` row ranges,
        bottom exclusive) and the boxes ``(top, bottom, left, right)`` (exclusive ends, clipped to the
        image) of ``cars``, ``persons``, ``poles`` and ``signs`` (each sign also names its ``pole``)."""
        return self.render(index)[2]

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(image uint8 (H, W, 3), label uint8 (H, W), layout dict) of image ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic images")
        rng = np.random.default_rng((self.seed, SPLIT_IDS[self.split], index))
        return _draw_scene(rng, *self.size)

    def __repr__(self) -> str:
        return (
            f"SyntheticStreetScenes(split={self.split!r}, size={self.size}, length={self.length}, "
            f"seed={self.seed})"
        )


def _draw_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, dict]:
    canvas = _Canvas(h, w, rng)
    horizon = int(rng.uniform(0.3, 0.55) * h)
    scene = SCENES[rng.choice(3, p=SCENE_PROBS)]
    ground = h - horizon
    layout: dict = {
        "horizon": horizon, "scene": scene, "road_rows": [], "sidewalk_rows": [],
        "cars": [], "persons": [], "poles": [], "signs": [],
    }

    canvas.rect(0, horizon, 0, w, SKY, canvas.new_region(SKY))
    _draw_ground(canvas, rng, scene, horizon, ground, layout)
    n_buildings = rng.integers(0, 3) if scene == "road" else rng.integers(3, 8)
    for _ in range(n_buildings):
        _draw_building(canvas, rng, horizon)
    n_trees = rng.integers(2, 6) if scene == "road" else rng.integers(1, 4)
    for _ in range(n_trees):
        _draw_tree(canvas, rng, horizon)
    if rng.random() < 0.4:
        _draw_hedge(canvas, rng, horizon)

    standing = _place_standing_objects(rng, scene, horizon, ground, w, h, layout)
    for base, kind, params in sorted(standing, key=lambda item: (item[0], item[1])):
        {"car": _draw_car, "person": _draw_person, "pole": _draw_pole}[kind](canvas, rng, layout, **params)

    layout["has_road"] = bool(layout["road_rows"])
    layout["has_sidewalk"] = bool(layout["sidewalk_rows"])
    gain = rng.uniform(0.7, 1.25)
    cast = (1.0 + rng.normal(0.0, 0.05, 3)).astype(np.float32)
    image = canvas.render(gain, cast, horizon)
    return image, canvas.label, layout


def _draw_ground(canvas: _Canvas, rng, scene: str, horizon: int, ground: int, layout: dict) -> None:
    h, w = canvas.h, canvas.w
    if scene == "pedestrian":
        canvas.rect(horizon, h, 0, w, SIDEWALK, canvas.new_region(SIDEWALK))
        layout["sidewalk_rows"].append((horizon, h))
        # paving bands: long horizontal strips of another stone, still sidewalk
        for _ in range(rng.integers(1, 4)):
            top = int(rng.uniform(horizon + 2, h - 3))
            thick = max(1, int(round(1 + 3 * (top - horizon) / ground)))
            canvas.rect(top, top + thick, 0, w, SIDEWALK, canvas.new_region(SIDEWALK, CURB_COLORS[rng.integers(2)]))
        return

    road_top = horizon
    road_bottom = h
    if scene == "street":
        far = max(3, int(round(ground * rng.uniform(0.08, 0.16))))
        road_top = horizon + far
        canvas.rect(horizon, road_top, 0, w, SIDEWALK, canvas.new_region(SIDEWALK))
        canvas.rect(road_top - 2, road_top, 0, w, SIDEWALK, canvas.new_region(SIDEWALK, CURB_COLORS[rng.integers(2)]))
        layout["sidewalk_rows"].append((horizon, road_top))
        if rng.random() < 0.7:
            near = max(4, int(round(ground * rng.uniform(0.15, 0.28))))
            road_bottom = h - near
            canvas.rect(road_bottom, h, 0, w, SIDEWALK, canvas.new_region(SIDEWALK))
            canvas.rect(road_bottom, road_bottom + 3, 0, w, SIDEWALK, canvas.new_region(SIDEWALK, CURB_COLORS[rng.integers(2)]))
            layout["sidewalk_rows"].append((road_bottom, h))
    elif rng.random() < 0.6:  # road only: a grass verge between the horizon and the road
        verge = max(2, int(round(ground * rng.uniform(0.04, 0.12))))
        road_top = horizon + verge
        canvas.rect(horizon, road_top, 0, w, VEGETATION, canvas.new_region(VEGETATION))

    canvas.rect(road_top, road_bottom, 0, w, ROAD, canvas.new_region(ROAD))
    layout["road_rows"].append((road_top, road_bottom))
    _draw_markings(canvas, rng, road_top, road_bottom, horizon, ground)


def _draw_markings(canvas: _Canvas, rng, top: int, bottom: int, horizon: int, ground: int) -> None:
    """Lane lines: long horizontal dashed or solid strips, labelled road."""
    xx = np.arange(canvas.w)[None, :]
    for _ in range(rng.integers(1, 3)):
        row = int(rng.uniform(top + 0.3 * (bottom - top), top + 0.75 * (bottom - top)))
        thick = 1 + int((row - horizon) > 0.5 * ground)
        if row + thick >= bottom:
            continue
        region = canvas.new_region(ROAD, MARKING_COLORS[rng.integers(2)])
        if rng.random() < 0.7:
            period = rng.integers(18, 40)
            dash = rng.integers(period // 3, 2 * period // 3)
            keep = np.broadcast_to((xx + rng.integers(period)) % period < dash, (thick, canvas.w))
        else:
            keep = None
        canvas.paint((row, row + thick, 0, canvas.w), keep, ROAD, region)


def _draw_building(canvas: _Canvas, rng, horizon: int) -> None:
    h, w = canvas.h, canvas.w
    width = int(rng.uniform(0.12, 0.35) * w)
    left = int(rng.uniform(-0.1 * w, w - 0.5 * width))
    top = int(rng.uniform(0.03 * h, max(0.04 * h, horizon - 0.12 * h)))
    region = canvas.new_region(BUILDING)
    canvas.rect(top, horizon, left, left + width, BUILDING, region)
    if rng.random() < 0.8:  # a grid of windows, still building
        win = canvas._window(top + 2, horizon - 2, left + 2, left + width - 2)
        if win is None:
            return
        py, px = rng.integers(6, 11), rng.integers(6, 11)
        wy, wx = rng.integers(2, py - 2), rng.integers(2, px - 2)
        yy, xx = np.ogrid[win[0] : win[1], win[2] : win[3]]
        keep = ((yy - top) % py < wy) & ((xx - left) % px < wx)
        canvas.paint(win, keep, BUILDING, canvas.new_region(BUILDING, WINDOW_COLORS[rng.integers(3)]))


def _draw_tree(canvas: _Canvas, rng, horizon: int) -> None:
    """A canopy standing just above the horizon on a short trunk that reaches the ground."""
    h, w = canvas.h, canvas.w
    ry = rng.uniform(0.05, 0.11) * h
    rx = ry * rng.uniform(0.9, 1.4)
    cx = rng.uniform(0, w)
    cy = horizon - ry - rng.uniform(0.0, 0.6) * ry
    tw = max(2, int(ry / 4))
    trunk = canvas.new_region(VEGETATION, (92, 70, 50))
    canvas.rect(int(cy), horizon + int(rng.integers(0, 3)), int(cx - tw / 2), int(cx - tw / 2) + tw, VEGETATION, trunk)
    canvas.ellipse(cy, cx, ry, rx, VEGETATION, canvas.new_region(VEGETATION), y_max=horizon)


def _draw_hedge(canvas: _Canvas, rng, horizon: int) -> None:
    h, w = canvas.h, canvas.w
    height = max(2, int(rng.uniform(0.03, 0.07) * h))
    left = int(rng.uniform(-0.2, 0.7) * w)
    canvas.rect(horizon - height, horizon, left, left + int(rng.uniform(0.2, 0.6) * w), VEGETATION, canvas.new_region(VEGETATION))


def _depth(base: int, horizon: int, h: int) -> float:
    """0 at the horizon, 1 at the bottom of the image."""
    return (base - horizon) / max(h - horizon, 1)


def _place_standing_objects(rng, scene: str, horizon: int, ground: int, w: int, h: int, layout: dict):
    """(base row, kind, params) for every car, person and pole; ``base`` is the first row below the
    object, which lies on the object's ground (road for cars, sidewalk for persons and poles)."""
    objects = []
    road = layout["road_rows"][0] if layout["road_rows"] else None
    walks = layout["sidewalk_rows"]
    if road is not None:
        top, bottom = road
        n_cars = rng.integers(1, 6)
        for _ in range(n_cars):
            if bottom - top < 4:
                break
            base = int(rng.integers(top + min(3, (bottom - top) // 2), bottom))
            size = h * (0.07 + 0.16 * _depth(base, horizon, h))
            objects.append((base, "car", dict(base=base, height=size, x=rng.uniform(0, w))))
    if walks:
        n_persons = rng.integers(1, 6) if scene == "street" else rng.integers(3, 10)
        for _ in range(n_persons):
            top, bottom = walks[rng.integers(len(walks))]
            base = int(rng.integers(min(top + 1, bottom - 1), bottom))
            size = h * (0.14 + 0.26 * _depth(base, horizon, h))
            objects.append((base, "person", dict(base=base, height=size, x=rng.uniform(0, w))))
        # poles stand on the near sidewalk (or the lower half of a pedestrian zone), so they run from
        # low in the image up into the sky; a street without a near sidewalk has none
        if scene == "pedestrian":
            top, bottom = horizon + ground // 2, h
        elif len(walks) == 2:
            top, bottom = walks[1]
        else:
            return objects
        xs: list[int] = []
        spacing = max(16, int(0.18 * h))
        for _ in range(rng.integers(1, 5)):
            x = int(rng.integers(3, w - 8))
            if any(abs(x - other) < spacing for other in xs):
                continue
            xs.append(x)
            base = int(rng.integers(min(top + 1, bottom - 1), bottom))
            with_sign = bool(rng.random() < 0.8)
            objects.append((base, "pole", dict(base=base, x=x, with_sign=with_sign)))
    return objects


def _draw_car(canvas: _Canvas, rng, layout: dict, *, base: int, height: float, x: float) -> None:
    height = max(height, 5.0)
    length = height * rng.uniform(1.9, 2.6)
    left = x - length / 2
    body = canvas.new_region(CAR)
    wheel_r = 0.2 * height
    # body from the wheel axis up, cabin on top, then windows; the wheels form the bottom edge
    canvas.rect(round(base - 0.7 * height), round(base - wheel_r), round(left), round(left + length), CAR, body)
    cab_l, cab_r = left + rng.uniform(0.15, 0.3) * length, left + rng.uniform(0.7, 0.85) * length
    canvas.rect(round(base - height), round(base - 0.68 * height), round(cab_l), round(cab_r), CAR, body)
    glass = canvas.new_region(CAR, WINDOW_COLORS[rng.integers(2)])
    canvas.rect(round(base - 0.92 * height), round(base - 0.72 * height), round(cab_l + 2), round(cab_r - 2), CAR, glass)
    tyre = canvas.new_region(CAR, TYRE_COLOR)
    for fx in (0.2, 0.8):
        canvas.ellipse(base - wheel_r, left + fx * length, wheel_r, wheel_r * 1.1, CAR, tyre, y_max=base)
    _add_box(layout["cars"], canvas, base - height, base, left, left + length)


def _draw_person(canvas: _Canvas, rng, layout: dict, *, base: int, height: float, x: float) -> None:
    height = max(height, 8.0)
    width = max(3.0, 0.28 * height)
    left = x - width / 2
    legs = canvas.new_region(PERSON)
    torso = canvas.new_region(PERSON)
    gap = max(1, round(width / 5))
    leg_w = max(1, round((width - gap) / 2))
    hip = round(base - 0.45 * height)
    canvas.rect(hip, base, round(left), round(left) + leg_w, PERSON, legs)
    canvas.rect(hip, base, round(left) + leg_w + gap, round(left) + 2 * leg_w + gap, PERSON, legs)
    canvas.rect(round(base - 0.82 * height), hip, round(left), round(left) + 2 * leg_w + gap, PERSON, torso)
    head_r = 0.09 * height
    canvas.ellipse(base - 0.82 * height - head_r * 0.9, left + (2 * leg_w + gap) / 2, head_r, head_r * 0.85,
                   PERSON, canvas.new_region(PERSON, SKIN_COLORS[rng.integers(2)]))
    _add_box(layout["persons"], canvas, base - height, base, left, round(left) + 2 * leg_w + gap)


def _draw_pole(canvas: _Canvas, rng, layout: dict, *, base: int, x: int, with_sign: bool) -> None:
    h = canvas.h
    width = int(rng.integers(2, 5))
    sign_h = max(4, int(round(rng.uniform(0.07, 0.11) * h)))
    top = int(rng.uniform(0.02, 0.15) * h) + (sign_h if with_sign else 0)
    canvas.rect(top, base, x, x + width, POLE, canvas.new_region(POLE))
    pole_index = len(layout["poles"])
    _add_box(layout["poles"], canvas, top, base, x, x + width)
    if with_sign:
        sign_w = max(width + 4, int(round(rng.uniform(0.1, 0.16) * h)))
        left = x + width // 2 - sign_w // 2
        region = canvas.new_region(SIGN)
        if rng.random() < 0.5:
            canvas.rect(top - sign_h, top, left, left + sign_w, SIGN, region)
        else:  # round sign, its lowest row still sits on the pole
            canvas.ellipse(top - sign_h / 2, left + sign_w / 2, sign_h / 2, sign_w / 2, SIGN, region)
            canvas.rect(top - 1, top, x, x + width, SIGN, region)
        layout["signs"].append(dict(box=_clip_box(canvas, top - sign_h, top, left, left + sign_w), pole=pole_index))


def _clip_box(canvas: _Canvas, top, bottom, left, right) -> tuple[int, int, int, int]:
    return (
        int(max(round(top), 0)), int(min(round(bottom), canvas.h)),
        int(max(round(left), 0)), int(min(round(right), canvas.w)),
    )


def _add_box(boxes: list, canvas: _Canvas, top, bottom, left, right) -> None:
    boxes.append(_clip_box(canvas, top, bottom, left, right))


def export_synthetic(
    out_dir: str | Path,
    splits=("train", "val"),
    size=(128, 256),
    length: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic scenes in the ``folder`` layout: ``images/<split>/<i>.png``,
    ``masks/<split>/<i>.png``, ``classes.txt`` and ``palette.txt``. Returns ``out_dir``.
    ``build_dataset("folder", out_dir, split)`` then reads back exactly the same arrays.

    Every argument is checked before the first write, and ``out_dir`` must be new or empty:
    ``overwrite=True`` lets the export write its files into a folder that holds some already
    (files of the same names are replaced, no other file is touched)."""
    out = Path(out_dir).expanduser()
    if not splits:
        raise ValueError("export_synthetic needs at least one split, e.g. train,val")
    datasets = {split: SyntheticStreetScenes(split=split, size=size, length=length, seed=seed) for split in splits}
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file; the export writes a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{str(out)!r} is not empty; export into a new or empty folder, or add --overwrite to write the scenes' files into it")
    write_class_files(out, SYNTHETIC_CLASSES, SYNTHETIC_PALETTE)
    for split, dataset in datasets.items():
        image_dir, mask_dir = out / "images" / split, out / "masks" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        digits = max(5, len(str(len(dataset))))
        for i in range(len(dataset)):
            image, label, _ = dataset.render(i)
            for array, folder in ((image, image_dir), (label, mask_dir)):
                with atomic_write(folder / f"{i:0{digits}d}.png") as tmp:  # whole or not at all, never through a link
                    Image.fromarray(array).save(tmp, format="PNG", compress_level=1)
    return out
