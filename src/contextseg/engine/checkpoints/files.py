"""Files: the one reader of torch files (every checkpoint, converter input and zoo file goes
through it, with ``weights_only=True``: they are untrusted input) and the writable-folder check."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["read_torch_file", "ensure_writable_folder"]


def read_torch_file(path: str | Path, what: str = "checkpoint", map_location: str | torch.device = "cpu", safe_globals: Sequence[Any] = (), error: type[Exception] = ValueError) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming ``what`` and the file:
    a missing file is ``FileNotFoundError``; an empty, truncated, pickled-code or otherwise
    unreadable file is ``error``. ``safe_globals`` are the extra classes the file may hold
    (mmengine's inert stand-ins in an mmsegmentation checkpoint's meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise error(f"cannot read {what} {str(path)!r}: the file is empty")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, files that are not torch files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise error(f"cannot read {what} {str(path)!r}: {reason[:300]}") from None


def ensure_writable_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` and prove that a file can be written in it, before any slow work; a
    ``ValueError`` naming ``what`` (the option or key) otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".contextseg-", suffix=".probe"):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {str(folder)!r} is not writable: {exc.strerror or exc}") from None
    return folder
