"""Data loaders: every ``DataLoader`` of training and evaluation is built and iterated here.

- `cap_workers`: ``data.num_workers`` beyond the CPUs this process may run on is capped to
  them, with one line saying so (more worker processes than CPUs only add memory and start-up time);
- `make_loader` builds a ``DataLoader`` with the capped count;
- `guarded` iterates one, turning the failures of worker processes that torch reports as
  ``RuntimeError`` (no or a full ``/dev/shm``, a worker killed by a signal, too small an open-file
  limit) into one `LoaderError` line that says what to change, and an error that contextseg's
  own checks raised inside a worker (a corrupt image) into that error again, as with no worker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from torch.utils.data import DataLoader

from .config import ConfigError
from .log import get_logger

__all__ = ["available_cpus", "cap_workers", "make_loader", "guarded", "LoaderError", "loader_failure"]

log = get_logger("loaders")

_said: set[tuple[str, int, int]] = set()  # (key, asked, cap) already reported: evaluations build a loader each time


class LoaderError(ConfigError):
    """A data loading worker failed for a reason of the machine's setup; the message says what to change."""


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset) where the
    system has one, else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cap_workers(requested: int, key: str = "data.num_workers") -> int:
    """``requested`` loader worker processes, at most one per available CPU; a larger value is
    capped with one log line naming ``key`` (once per value and process)."""
    cpus = available_cpus()
    if requested <= cpus:
        return requested
    if (key, requested, cpus) not in _said:
        _said.add((key, requested, cpus))
        log.warning("%s=%d is more than this machine's %d CPU%s: using %d", key, requested, cpus, "" if cpus == 1 else "s", cpus)
    return cpus


def make_loader(dataset: Any, num_workers: int, key: str = "data.num_workers", **kwargs: Any) -> DataLoader:
    """``DataLoader(dataset, num_workers=cap_workers(num_workers, key), **kwargs)``; iterate it with `guarded`."""
    return DataLoader(dataset, num_workers=cap_workers(num_workers, key), **kwargs)


class guarded(Iterator):
    """``iter(loader)`` (created at once, as ``iter`` would: a loader draws its base seed then), whose
    worker failures are `loader_failure` errors. ``key`` is the setting that sets the worker
    count, named in the advice."""

    def __init__(self, loader: Iterable, key: str = "data.num_workers") -> None:
        self.key = key
        self._length = len(loader) if hasattr(loader, "__len__") else None
        try:
            self._it = iter(loader)
        except (RuntimeError, OSError, ValueError) as exc:
            translated = loader_failure(exc, key)
            if translated is None:
                raise
            raise translated from None

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this loader has no length")
        return self._length

    def __next__(self):
        try:
            return next(self._it)
        except (RuntimeError, OSError, ValueError) as exc:  # StopIteration and the rest pass as they are
            translated = loader_failure(exc, self.key)
            if translated is None:
                raise
            raise translated from None


_PACKAGE = Path(__file__).resolve().parents[1]


def loader_failure(exc: BaseException, key: str = "data.num_workers") -> Exception | None:
    """The contextseg error that ``exc``, raised while a loader was created or iterated, stands for,
    or ``None`` when it is none of these (a bug, or an error to let through as it is)."""
    text = str(exc)
    flat = " ".join(text.split())
    lower = flat.lower()
    workers = f"set {key}=0 (no worker processes)"
    if "too many open files" in lower or "received 0 items of ancdata" in lower or getattr(exc, "errno", None) == 24:
        return LoaderError(f"data loading worker failed: too many open files ({flat[:120]}); raise the open-file limit (ulimit -n) or {workers}")
    if ("shared memory" in lower or "/dev/shm" in lower or "shm" in re.findall(r"[a-z]+", lower) or "bus error" in lower
            or "torch_shm_manager" in lower or ("no space left on device" in lower and "</torch_" in lower)):
        return LoaderError(f"data loading worker failed: shared memory (/dev/shm) is unavailable or full ({flat[:120]}); "
                           f"{workers} or enlarge /dev/shm (docker run --shm-size=8g, or mount a larger tmpfs)")
    killed = re.search(r"DataLoader worker \(pid (\d+)\) is killed by signal: ([\w ]+)", flat)
    if killed:
        if killed.group(2).strip().lower() == "killed":
            return LoaderError(f"data loading worker (pid {killed.group(1)}) was killed (SIGKILL: most often the kernel's out-of-memory killer); "
                               f"lower {key}, train.batch_size or data.crop_size, or add memory")
        return None  # a crash (segmentation fault, abort): a bug, with its traceback
    gone = re.search(r"DataLoader worker \(pid\(s\) ([\d, ]+)\) exited unexpectedly", flat)
    if gone:
        return LoaderError(f"data loading worker (pid(s) {gone.group(1)}) exited unexpectedly (most often out of memory or out of shared memory); "
                           f"{workers}, lower train.batch_size, or enlarge /dev/shm")
    return _own_error_of_a_worker(exc, text)


def _own_error_of_a_worker(exc: BaseException, text: str) -> Exception | None:
    """An error contextseg's own checks raised in a worker process (torch re-raises it in this one,
    its message holding the worker's traceback): the same error with its own one-line message, as
    it is without workers. Anything raised elsewhere stays a bug."""
    if not isinstance(exc, (ValueError, OSError)) or not re.match(r"Caught \w+ in DataLoader worker process \d+", text):
        return None
    frames = re.findall(r'File "([^"]+)", line \d+', text)
    if not frames or _PACKAGE not in Path(frames[-1]).resolve().parents:
        return None
    last = text.rstrip().splitlines()[-1]
    message = last.split(": ", 1)[1] if ": " in last and re.match(r"[\w.]+(: |$)", last) else last
    try:
        return type(exc)(message)
    except Exception:  # an error class that needs other arguments
        return ValueError(message)
