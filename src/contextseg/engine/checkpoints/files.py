"""Files: the one reader of torch files (every checkpoint, converter input and zoo file goes
through it, with ``weights_only=True``: they are untrusted input), the writable-folder check and
the output locks; the atomic writer lives in `contextseg.data.io` for every layer."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from ...data.io import WriteFailed, append_no_follow, atomic_write, write_atomic
from ...backbones.weights_budget import check_safetensors_file, check_torch_file, max_load_bytes
from ..config import expanded_shape

# values (containers and leaves, a tensor one) in a torch file once its shared references are counted
# at each use: a contextseg checkpoint of a ResNet-101 model with its AdamW state holds ~10,000
MAX_LOADED_VALUES = 1_000_000

__all__ = ["read_torch_file", "check_torch_file", "check_safetensors_file", "max_load_bytes", "ensure_writable_folder", "WorkDirLock", "WorkDirBusy", "OutputLock", "OutputBusy", "output_lock", "append_no_follow", "atomic_write", "write_atomic", "WriteFailed"]


def read_torch_file(path: str | Path, what: str = "checkpoint", map_location: str | torch.device = "cpu", safe_globals: Sequence[Any] = (),
                    error: type[Exception] = ValueError, max_bytes: int | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming ``what`` and the file:
    a missing file is ``FileNotFoundError``; an empty, truncated, pickled-code or otherwise
    unreadable file is ``error``, and so is one that would make torch allocate more than the file
    holds or than ``max_bytes`` (`check_torch_file`, before anything is loaded).
    ``safe_globals`` are the extra classes the file may hold (mmengine's inert stand-ins in an
    mmsegmentation checkpoint's meta)."""
    path = Path(path)
    check_torch_file(path, what, error, max_bytes)
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on unusual pickle protocols; a refusal is the error below
            loaded = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, files that are not torch files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "Weights only load failed" in reason:  # torch's long advice; the one fact that matters is what it refused
            refused = reason.split("WeightsUnpickler error:", 1)[-1].split(" was not an allowed")[0].split(". Check the")[0].strip()
            reason = f"it holds objects that safe loading refuses to create ({refused[:160]}); it was not written by contextseg or plain torch.save of tensors"
        raise error(f"cannot read {what} {str(path)!r}: {reason[:300]}") from None
    # a pickle names an object once and uses it at will: a list of ten references to a list of ten
    # references ... is a few hundred bytes and a billion values to any code that walks it
    shape = expanded_shape(loaded, (dict, list, tuple))
    if shape is None or shape[0] > MAX_LOADED_VALUES:
        raise error(f"cannot read {what} {str(path)!r}: its entries {'contain themselves' if shape is None else f'expand to more than {MAX_LOADED_VALUES} values'} "
                    "through shared references (a checkpoint holds tensors and a few thousand plain values)")
    return loaded


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


class OutputBusy(ValueError):
    """Another process is writing the same output."""


class OutputLock:
    """An exclusive lock on an output (a work dir, a predict folder, an exported file) while one
    process writes it: the file ``lock_path``, held with ``fcntl.flock`` for the writer's lifetime
    and holding ``pid host start-time``.

    A second writer fails at once with `OutputBusy` (``busy`` says what to do); a lock left
    by a killed process is no lock at all (the kernel drops ``flock`` locks with the process), so a
    stale lock file is taken over. Race-free: the lock file is never written through a link, a
    writer that locked a file another one has just removed tries again, and release removes the
    path while still holding the lock, so two writers never hold locks on two different files at
    the same path. Where ``fcntl`` does not exist (Windows) the lock is a no-op."""

    def __init__(self, lock_path: str | Path, busy: str) -> None:
        self.path = Path(lock_path)
        self.busy = busy
        self._fd: int | None = None

    def acquire(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except OSError as exc:
                if exc.errno == errno.ELOOP or self.path.is_symlink():
                    raise OutputBusy(f"{self.path} is a symbolic link; contextseg never writes through a link: remove it") from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").split()
                os.close(fd)
                who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
                raise OutputBusy(self.busy.format(who=who)) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # locked a file its holder removed on release: lock the one at the path now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while the lock is held: a waiting writer re-checks the path
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def output_lock(out: str | Path, option: str, command: str) -> OutputLock:
    """The (not yet acquired) lock of one command's output ``out``, a file or a folder:
    ``.<name>.contextseg-lock`` beside it, so that two runs never write one output at once."""
    out = Path(out)
    return OutputLock(out.parent / f".{out.name}.contextseg-lock",
                      f"{option} {str(out)!r} is being written by another contextseg {command} that is still running ({{who}}); "
                      f"wait for it to finish, or choose another {option}")


class WorkDirBusy(OutputBusy):
    """Another process is training in this work dir."""


class WorkDirLock(OutputLock):
    """The lock of a work dir while a training writes to it: ``work_dir/.lock`` (see
    `OutputLock`). Only rank 0 takes it: it is the only process that writes there."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(Path(folder) / ".lock", f"train.work_dir {str(folder)!r} is in use by a training that is still running ({{who}}); "
                                                  "wait for it to finish, or give this run another train.work_dir")

    def acquire(self) -> "WorkDirLock":
        try:
            return super().acquire()
        except OutputBusy as exc:
            if isinstance(exc, WorkDirBusy):
                raise
            raise WorkDirBusy(str(exc)) from None
