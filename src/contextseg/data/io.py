"""Writing files safely, for every layer: whole or not at all, never through a link, with the
user's umask. (Reading untrusted images is :mod:`contextseg.data.base`'s.)"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["WriteFailed", "append_no_follow", "atomic_write", "write_atomic"]


class WriteFailed(OSError):
    """A file could not be written (disk full, quota, permissions); the message names it and says
    that no partial file was left: the previous version, if any, is unchanged."""

    def __str__(self) -> str:
        return self.args[1] if len(self.args) > 1 else super().__str__()


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise WriteFailed(errno.ELOOP, f"cannot write {path}: it is a symbolic link (to {os.readlink(path)}); "
                                        "contextseg never writes through a link: remove it or choose another path")


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (255 where it does not say)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the folder cannot say
        limit = -1
    return limit if isinstance(limit, int) and limit > 0 else 255


def _temporary_name(name: str, limit: int) -> str:
    """``.NAME.XXXXXXXX.tmp`` for ``name``, with as much of ``name`` as fits in ``limit`` bytes: a
    name near the file system's limit keeps its beginning (never half a character), so that every
    name that can be written at all can be written through a temporary file."""
    token = secrets.token_hex(4)
    room = limit - len(f"..{token}.tmp")
    prefix = name
    while prefix and len(os.fsencode(prefix)) > room:
        prefix = prefix[: max(0, min(len(prefix) - 1, room))]  # first cut to ``room`` characters, then one at a time
    return f".{prefix}.{token}.tmp"


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created exclusively (never through a link) with mode
    0666 less the process umask, as ``open(path, "w")`` would create ``path`` itself. Its name is
    ``.NAME.XXXXXXXX.tmp``, shortened to the file system's longest name (``PC_NAME_MAX``) for a long
    ``NAME``."""
    limit = _name_max(path.parent)
    for _ in range(100):
        tmp = path.parent / _temporary_name(path.name, limit)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Write ``path`` through a temporary file in the same folder, renamed over ``path`` only when
    the writing code finished: readers never see a partial file and a failure (a full disk, a
    kill) leaves the previous file as it was. Yields the temporary path to write to; any failure is
    :class:`WriteFailed` naming ``path``. A symbolic link at ``path`` is refused (its target is
    never written); the new file's permissions follow the umask, as any file a program creates."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_link(path)
        tmp = _create_temporary(path)
    except WriteFailed:
        raise
    except OSError as exc:
        raise WriteFailed(exc.errno or errno.EIO, f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename
            os.fsync(f.fileno())
        _refuse_link(path)  # a link put there while the file was being written
        os.replace(tmp, path)  # replaces a directory entry: never follows a link at path
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, WriteFailed)):
            raise
        oserror = exc if isinstance(exc, OSError) else next((e for e in (exc.__cause__, exc.__context__) if isinstance(e, OSError)), None)
        if oserror is None and not isinstance(exc, RuntimeError):
            raise  # a bug in the writing code, not a failed write
        reason = (oserror.strerror if oserror is not None and oserror.strerror else " ".join(str(exc).split())[:200]) or type(exc).__name__
        code = oserror.errno if oserror is not None and oserror.errno else errno.EIO
        raise WriteFailed(code, f"cannot write {path}: {reason}; nothing partial was left (any previous {path.name} is unchanged)") from None


def append_no_follow(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (created with the umask's permissions), refusing a symbolic link
    at ``path``: the link's target is never written. :class:`WriteFailed` names the file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            _refuse_link(path)
        raise WriteFailed(exc.errno or errno.EIO, f"cannot append to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "a") as f:
            f.write(text)
    except OSError as exc:
        raise WriteFailed(exc.errno or errno.EIO, f"cannot append to {path}: {exc.strerror or exc}") from None


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """``data`` into ``path`` with :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


