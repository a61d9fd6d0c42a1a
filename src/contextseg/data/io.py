"""Writing files safely, for every layer: whole or not at all, never through a link, with the
user's umask; and the one rule for what may be written where (`check_output`): a new file,
or a file contextseg wrote itself (it carries a mark, `written_by_contextseg`) when the user
passed ``--overwrite``; never an input, never a file of someone else. (Reading untrusted images is
`contextseg.data.base`'s.)"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["WriteFailed", "OutputRefused", "append_no_follow", "atomic_write", "write_atomic", "check_output", "written_by_contextseg",
           "AUTHOR_MARK", "YAML_MARK", "png_mark"]


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
    `WriteFailed` naming ``path``. A symbolic link at ``path`` is refused (its target is
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
    at ``path``: the link's target is never written. `WriteFailed` names the file."""
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
    """``data`` into ``path`` with `atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)




# -- authorship: what contextseg may replace ------------------------------------------------------
AUTHOR_MARK = "contextseg"  # the PNG text chunk key, the JSON "written_by" value's first word, the safetensors "library"
LEGACY_PNG_MARKS = ("contextseg-predict",)  # what predict marked its PNGs with before every writer had one mark
YAML_MARK = "# written by contextseg"  # the first line of every YAML contextseg writes
_JSON_MARK = re.compile(rb'\A\s*\{\s*(?:"written_by"\s*:\s*"contextseg|"contextseg"\s*:)')  # eval/bench JSON; a saved model's config.json
ONNX_MARK = b"contextseg_model"  # a metadata_props key of every ONNX file contextseg exports
_ONNX_TAIL = 4 << 20  # metadata_props follow the graph: the mark lies in the file's last bytes


class OutputRefused(ValueError):
    """An output that would replace an input, a file contextseg did not write, something that is
    not a file, or (without ``--overwrite``) a file of an earlier run; the message names it and
    says what to do."""


def png_mark(what: str):
    """The ``PngInfo`` that marks a PNG as written by contextseg (``what``: which command, what it holds)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(AUTHOR_MARK, what)
    return info


def written_by_contextseg(path: str | Path) -> bool:
    """Whether the regular file ``path`` carries contextseg's mark, read from at most a few MB of
    it (never the whole of a large file): a PNG text chunk ``contextseg`` (or predict's older
    ``contextseg-predict``), a YAML whose first line is ``# written by contextseg``, a JSON object
    whose first key is ``"written_by": "contextseg ..."``, a safetensors file whose metadata says
    ``"library": "contextseg"``, an ONNX file with contextseg's metadata. Anything unreadable is not."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=False).st_mode):
            return False
        with open(path, "rb") as f:
            if suffix == ".png":
                from PIL import PngImagePlugin

                # the chunks before the first IDAT only, where PIL writes a pnginfo text chunk: never
                # ``Image.open`` (its bomb check raises on a header over 179 megapixels) nor ``.text``
                # (which decodes every pixel: a 140 KB PNG of 12000 x 12000 took 800 MB)
                with PngImagePlugin.PngImageFile(f) as img:
                    return any(k in (AUTHOR_MARK, *LEGACY_PNG_MARKS) for k in img.info)
            if suffix in (".yaml", ".yml"):
                return f.readline(256).startswith(YAML_MARK.encode())
            if suffix == ".json":
                return bool(_JSON_MARK.match(f.read(4096)))
            if suffix == ".safetensors":
                head = f.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
                if not 0 < length <= 16 << 20:
                    return False
                import json

                header = json.loads(f.read(length))
                return isinstance(header, dict) and isinstance(header.get("__metadata__"), dict) and header["__metadata__"].get("library") == AUTHOR_MARK
            if suffix == ".onnx":
                f.seek(max(0, os.fstat(f.fileno()).st_size - _ONNX_TAIL))
                return ONNX_MARK in f.read(_ONNX_TAIL)
    except (OSError, ValueError, SyntaxError, RecursionError, EOFError, IndexError, TypeError, struct.error):
        return False  # PIL's (those Image.open skips a plugin on, too) and json's errors on a file that is not what its name says
    return False


def check_output(path: str | Path, option: str, overwrite: bool = False, inputs: Iterable[str | Path] = (), read: str = "an input of this command") -> Path:
    """The rule for every file contextseg is about to write at ``path`` (given by ``option``, e.g.
    ``--json``), checked before any slow work: an input of the command (``inputs``: the config it
    read, the images it reads) is never replaced; a folder, a FIFO, a socket or a device is not a
    file to write; an existing file is replaced only if contextseg wrote it
    (`written_by_contextseg`) and ``overwrite`` is set. Refusals are `OutputRefused`."""
    path = Path(path)
    for source in inputs:
        try:
            same = os.path.samefile(source, path)
        except OSError:  # either is missing
            same = False
        if same:
            raise OutputRefused(f"{option} {str(path)!r} is {read} ({source}); contextseg never writes over what it reads: choose another {option}")
    try:
        mode = os.stat(path, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:  # a file where a folder of the path should be
            folder = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
            raise OutputRefused(f"{option} {str(path)!r}: {folder} is a file, not a folder; choose another {option}") from None
        raise OutputRefused(f"{option} {str(path)!r} cannot be checked ({exc.strerror or exc}); choose another {option}") from None
    if stat.S_ISLNK(mode):
        raise OutputRefused(f"{option} {str(path)!r} is a symbolic link; contextseg never writes through a link: choose another {option}")
    if stat.S_ISDIR(mode):
        raise OutputRefused(f"{option} {str(path)!r} is a folder; give the path of a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        raise OutputRefused(f"{option} {str(path)!r} exists and is {kind}, not a file contextseg wrote; choose another {option}")
    if not written_by_contextseg(path):
        raise OutputRefused(f"{option} {str(path)!r} exists and was not written by contextseg; it is never replaced, with --overwrite or without: "
                            f"choose another {option} or move the file away")
    if not overwrite:
        raise OutputRefused(f"{option} {str(path)!r} exists already (written by contextseg); pass --overwrite to replace it or choose another {option}")
    return path
