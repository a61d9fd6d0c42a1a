"""Files: the one reader of torch files (every checkpoint, converter input and zoo file goes
through it, with ``weights_only=True``: they are untrusted input) and the writable-folder check."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

__all__ = ["read_torch_file", "ensure_writable_folder", "WorkDirLock", "WorkDirBusy", "atomic_write", "write_atomic", "WriteFailed"]


class WriteFailed(OSError):
    """A file could not be written (disk full, quota, permissions); the message names it and says
    that no partial file was left: the previous version, if any, is unchanged."""

    def __str__(self) -> str:
        return self.args[1] if len(self.args) > 1 else super().__str__()


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Write ``path`` through a temporary file in the same folder, renamed over ``path`` only when
    the writing code finished: readers never see a partial file and a failure (a full disk, a
    kill) leaves the previous file as it was. Yields the temporary path to write to; any failure is
    :class:`WriteFailed` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise WriteFailed(exc.errno or errno.EIO, f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        oserror = exc if isinstance(exc, OSError) else next((e for e in (exc.__cause__, exc.__context__) if isinstance(e, OSError)), None)
        if oserror is None and not isinstance(exc, RuntimeError):
            raise  # a bug in the writing code, not a failed write
        reason = (oserror.strerror if oserror is not None and oserror.strerror else " ".join(str(exc).split())[:200]) or type(exc).__name__
        code = oserror.errno if oserror is not None and oserror.errno else errno.EIO
        raise WriteFailed(code, f"cannot write {path}: {reason}; nothing partial was left (any previous {path.name} is unchanged)") from None


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """``data`` into ``path`` with :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


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
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip archive, or a legacy pickle
        raise error(f"cannot read {what} {str(path)!r}: it is not a PyTorch file (written by torch.save); it starts with {head!r}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on unusual pickle protocols; a refusal is the error below
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, files that are not torch files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "Weights only load failed" in reason:  # torch's long advice; the one fact that matters is what it refused
            refused = reason.split("WeightsUnpickler error:", 1)[-1].split(" was not an allowed")[0].split(". Check the")[0].strip()
            reason = f"it holds objects that safe loading refuses to create ({refused[:160]}); it was not written by contextseg or plain torch.save of tensors"
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


class WorkDirBusy(ValueError):
    """Another process is training in this work dir."""


class WorkDirLock:
    """An exclusive lock on a work dir while a training writes to it: ``work_dir/.lock``, held with
    ``fcntl.flock`` on an open file for the trainer's lifetime and holding ``pid host start-time``.

    A second training in the same folder fails at once with :class:`WorkDirBusy` naming the first's
    pid; a lock left by a killed process is no lock at all (the kernel drops ``flock`` locks with the
    process), so a stale ``.lock`` file is taken over. Where ``fcntl`` does not exist (Windows) the
    lock is a no-op. Only rank 0 takes it: it is the only process that writes there."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / ".lock"
        self._file = None

    def acquire(self) -> "WorkDirLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().split()
            handle.close()
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise WorkDirBusy(f"train.work_dir {str(self.path.parent)!r} is in use by a training that is still running ({who}); "
                              "wait for it to finish, or give this run another train.work_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the flock
            self._file = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "WorkDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

