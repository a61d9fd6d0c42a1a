"""A generic dataset in a plain folder layout (also what ``export_synthetic`` writes)."""

from __future__ import annotations

from pathlib import Path

from .base import IMAGE_EXTENSIONS, DatasetError, FileSegmentationDataset
from .io import write_atomic
from .palettes import default_palette


class FolderDataset(FileSegmentationDataset):
    """``ROOT/images/<split>/*`` with ``ROOT/masks/<split>/<stem>.png``, ``ROOT/classes.txt`` (one
    class name a line) and optionally ``ROOT/palette.txt`` (one ``r g b`` line per class).

    Mask values are class indices, 255 is ignored. ``base_size`` (long, short) sets the scale the
    transforms rescale to; None keeps each image's own size.
    """

    name = "folder"
    layout = (
        "ROOT/images/<split>/<name>.<png|jpg|...>, ROOT/masks/<split>/<name>.png, ROOT/classes.txt "
        "(one class name a line) and optionally ROOT/palette.txt (one 'r g b' line per class)"
    )

    def __init__(self, root, split="train", transforms=None, *, base_size=None, strict=True):
        self.base_size = tuple(base_size) if base_size is not None else None
        super().__init__(root, split, transforms, strict=strict)

    @classmethod
    def split_marker(cls, root: Path, split: str) -> Path:
        return root / "images" / split

    def find_samples(self) -> None:
        self.class_list = self.root / "classes.txt"
        self.classes = read_classes(self.class_list)
        self.palette = read_palette(self.root / "palette.txt", len(self.classes))
        image_dir = self.root / "images" / self.split
        mask_dir = self.root / "masks" / self.split
        if self.require_dir(image_dir, "image") and self.require_dir(mask_dir, "mask"):
            images = [p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
            self.pair_images_with_masks(images, lambda p: mask_dir / f"{p.stem}.png", mask_dir.glob("*.png"))


def read_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DatasetError(f"class list {path} does not exist; write one class name a line")
    lines = [line.strip() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()  # trailing blank lines are only the file's end
    names = tuple(lines)
    if not names:
        raise DatasetError(f"class list {path} is empty; write one class name a line")
    blank = [number for number, name in enumerate(names, 1) if not name]
    if blank:  # a class index is its line number: a skipped blank line would shift every class after it
        raise DatasetError(f"class list {path}: line {blank[0]} is blank; every class (its index is its line, from 0) needs a name")
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise DatasetError(f"class list {path} names {name!r} twice (classes {seen[name]} and {index}); each class needs its own name")
        seen[name] = index
    if len(names) > 255:
        raise DatasetError(f"class list {path} has {len(names)} classes; at most 255 fit in a PNG mask")
    return names


def read_palette(path: Path, num_classes: int) -> list[tuple[int, int, int]]:
    if not path.is_file():
        return default_palette(num_classes)
    palette = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        try:
            rgb = tuple(int(v) for v in parts)
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DatasetError(f"{path} line {number}: expected 'r g b' with values 0..255, got {line!r}")
        palette.append(rgb)
    if len(palette) != num_classes:
        raise DatasetError(f"{path} has {len(palette)} colours but classes.txt names {num_classes} classes")
    return palette


def write_class_files(root: Path, classes, palette) -> None:
    """Write ``classes.txt`` and ``palette.txt`` for a folder dataset."""
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "classes.txt", "".join(f"{name}\n" for name in classes))
    write_atomic(root / "palette.txt", "".join(f"{r} {g} {b}\n" for r, g, b in palette))
