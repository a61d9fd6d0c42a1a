"""Shared references for the tests: the released code's rules, written plainly."""

import pytest


def _release_row_index(top: int, crop_height: int, image_height: int, rows: int = 16) -> list[int]:
    """The released PosEncoding1D lookup written plainly: the dataset's row map holds
    ``y * 128 // H`` for original row y; the module takes ``// (128 // rows)``, resamples the crop's
    map to ``rows`` rows by nearest neighbour (pooled row r <- crop row floor(r * h / rows)) and
    clamps to [0, rows]."""
    rfactor = 128 // rows
    row_map = [(top + y) * 128 // image_height for y in range(crop_height)]
    return [min(max(row_map[r * crop_height // rows] // rfactor, 0), rows) for r in range(rows)]



@pytest.fixture
def release_row_index():
    """HANet's released row lookup (see ``_release_row_index``)."""
    return _release_row_index


@pytest.fixture(scope="module")
def records():
    """``tests/records.py``, the generator of the test records and method tables, as a module."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("contextseg_test_records", Path(__file__).resolve().parent / "records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
