"""Reading untrusted images changes nothing process-wide: PIL's decompression-bomb limit is a module
global that other threads (the demo's requests) read at the same time."""

import numpy as np
import pytest
from PIL import Image

from contextseg.data.base import ImageTooLarge, image_size, open_unchecked, read_image


def test_reading_never_touches_pils_global_limit(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a user's own, much stricter, setting
    seen = []
    open_ = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: seen.append(Image.MAX_IMAGE_PIXELS) or open_(*a, **k))
    assert read_image(path).shape == (60, 80, 3)  # our limit (100 MP) decides, not PIL's global
    assert image_size(path) == (60, 80)
    assert all(limit == 1000 for limit in seen) and Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ImageTooLarge):
        read_image(path, max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_open_unchecked_reads_what_image_open_reads(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg", ".bmp", ".tif", ".webp"):
        path = tmp_path / f"a{suffix}"
        Image.fromarray(array).save(path)
        with open_unchecked(path) as ours, Image.open(path) as theirs:
            assert ours.format == theirs.format and np.array_equal(np.asarray(ours), np.asarray(theirs)), suffix
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(Image.UnidentifiedImageError, match="notes.png"):
        open_unchecked(tmp_path / "notes.png")


def test_the_limit_message_gives_counts_in_the_limits_unit(tmp_path):
    """An image just over its limit says by how much in a unit that shows it: pixels under a
    megapixel, megapixels with enough digits above (never "0.0 megapixels" or "1.0 over 1")."""
    from contextseg.data.base import _check_pixels

    cases = {(56, 40, 1000): "56x40 = 2240 pixels, over the limit of 1000 pixels",
             (56, 40, 1): "56x40 = 2240 pixels, over the limit of 1 pixel ",
             (1000001, 1, 1_000_000): "1000001x1 = 1.000001 megapixels, over the limit of 1 megapixel ",
             (60000, 60000, 100_000_000): "60000x60000 = 3600 megapixels, over the limit of 100 megapixels"}
    for (width, height, limit), text in cases.items():
        with pytest.raises(ImageTooLarge) as caught:
            _check_pixels(width, height, "image x.png", limit)
        assert text in str(caught.value), str(caught.value)
