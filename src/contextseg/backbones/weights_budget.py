"""What a weights file would make its loader allocate, checked on the file's headers before any
tensor is read: a torch archive's records must be stored uncompressed with sizes that agree and fit
in the file, a legacy pickle's declared storages must fit, a safetensors header length must fit, and
the total stays within a budget (``CONTEXTSEG_MAX_LOAD_BYTES``, 8 GiB). It lives with the
backbones, the lowest floor that reads weights files (``model.pretrained_backbone``); the engine's
checkpoint reader uses it too."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch

__all__ = ["check_torch_file", "check_safetensors_file", "max_load_bytes", "MAX_LOAD_BYTES_ENV", "DEFAULT_MAX_LOAD_BYTES"]


DEFAULT_MAX_LOAD_BYTES = 8 << 30  # 8 GiB: several times the largest checkpoint contextseg writes (weights, EMA, AdamW moments)
MAX_LOAD_BYTES_ENV = "CONTEXTSEG_MAX_LOAD_BYTES"


def max_load_bytes() -> int:
    """How many bytes the tensors of one torch file may take in memory: ``$CONTEXTSEG_MAX_LOAD_BYTES``
    (a number of bytes, ``8e9`` allowed) or 8 GiB."""
    text = os.environ.get(MAX_LOAD_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_LOAD_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_LOAD_BYTES_ENV}={text!r}: expected a positive number of bytes such as 8000000000")
    return value


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _check_zip_archive(path: Path, what: str, file_size: int, limit: int, error: type[Exception]) -> None:
    """What a torch zip archive makes ``torch.load`` allocate, checked on its central directory
    and local headers before anything is read: ``torch.save`` stores every record uncompressed, so a
    compressed record (which could inflate ~1000x) is refused, and the records' declared sizes
    must agree with the headers, lie inside the file and stay within ``limit``."""
    def refuse(reason: str):
        return error(f"cannot read {what} {str(path)!r}: {reason}")

    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            directory = getattr(archive, "start_dir", file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise refuse(f"it is not a valid PyTorch zip archive ({' '.join(str(exc).split())[:160] or type(exc).__name__})") from None
    if not records:
        raise refuse("the zip archive holds no records; it was not written by torch.save")
    total = 0
    with open(path, "rb") as f:
        for info in records:
            name = info.filename[:80]
            if info.compress_type != zipfile.ZIP_STORED:
                raise refuse(f"record {name!r} is compressed (zip method {info.compress_type}); torch.save stores records uncompressed, "
                             "and a compressed record could expand far beyond the file's size in memory")
            if info.file_size != info.compress_size:
                raise refuse(f"record {name!r} declares {info.file_size} bytes but stores {info.compress_size}; the archive is corrupt or forged")
            if not 0 <= info.header_offset < directory:
                raise refuse(f"record {name!r} has its header at offset {info.header_offset}, outside the file; the archive is corrupt or forged")
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise refuse(f"record {name!r} has no local header at offset {info.header_offset}; the archive is corrupt or forged")
            method, local_compressed, local_size, name_len, extra_len = struct.unpack("<8xH8xIIHH", local)
            if method != info.compress_type or f.read(name_len) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace"):
                raise refuse(f"record {name!r}: its local header disagrees with the central directory (name or method); the archive is corrupt or forged")
            extra = f.read(extra_len)
            if 0xFFFFFFFF in (local_compressed, local_size):
                local_size, local_compressed = _zip64_sizes(extra, local_size, local_compressed)
            if (local_size, local_compressed) != (info.file_size, info.compress_size):
                if not (info.flag_bits & 0x08 and local_size == local_compressed == 0):  # torch.save's sizes follow the data (a data descriptor)
                    raise refuse(f"record {name!r}: its local header declares {local_size} bytes, the central directory {info.file_size}; "
                                 "the archive is corrupt or forged")
            end = info.header_offset + 30 + name_len + extra_len + info.compress_size
            if end > directory:
                raise refuse(f"record {name!r} declares {info.file_size} bytes, more than the file holds before its directory "
                             f"({file_size} bytes in all); the file is truncated, corrupt or forged")
            total += info.file_size
    if total > file_size:  # stored records overlap (each byte of the file counted many times)
        raise refuse(f"its records declare {total} bytes in all, more than the file's {file_size}; the archive is corrupt or forged")
    if total > limit:
        raise refuse(f"its tensors would take {_size(total)} in memory, more than the limit of {_size(limit)} "
                     f"(set {MAX_LOAD_BYTES_ENV} to a larger number of bytes to read it)")


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int]:
    """A local header's sizes from its zip64 extra field (where the 32-bit fields say 0xFFFFFFFF)."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        if tag == 1:
            values = list(struct.unpack_from(f"<{min(length, len(extra) - at - 4) // 8}Q", extra, at + 4))
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if compressed == 0xFFFFFFFF and values:
                compressed = values.pop(0)
            break
        at += 4 + length
    return size, compressed


class _Stub:
    """Any global of a legacy pickle, while `_legacy_storage_bytes` scans it: inert, it runs
    nothing and keeps nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass

    def add(self, value) -> None:
        pass


class _StorageScan(pickle.Unpickler):
    """Reads a legacy torch pickle without creating anything it names: every global is a
    `_Stub` class, and each storage it declares is only counted."""

    def __init__(self, file, sizes: dict) -> None:
        super().__init__(file, encoding="latin1")
        self.sizes = sizes

    def find_class(self, module: str, name: str):
        return type(str(name)[:100], (_Stub,), {"_global": f"{module}.{name}"})

    def persistent_load(self, saved_id):
        if isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] in ("storage", b"storage"):
            storage_type, root_key, numel = saved_id[1], saved_id[2], saved_id[4]
            if not isinstance(numel, int) or numel < 0:
                raise pickle.UnpicklingError(f"a storage declares {numel!r} elements")
            name = getattr(storage_type, "_global", "").rsplit(".", 1)[-1]
            self.sizes[repr(root_key)[:200]] = numel * _STORAGE_ELEMENT_BYTES.get(name, 16)
        return _Stub()


_STORAGE_ELEMENT_BYTES = {name: torch._utils._element_size(dtype) for dtype, name in torch.storage._dtype_to_storage_type_map().items()}


def _check_legacy_pickle(path: Path, what: str, file_size: int, limit: int, error: type[Exception]) -> None:
    """A legacy (pre-zip) torch file allocates every storage its pickle declares before reading
    the storage's bytes from the file: the declared sizes, scanned without creating anything, must
    fit in the file (each storage's bytes follow the pickles) and within ``limit``."""
    sizes: dict = {}
    try:
        with open(path, "rb") as f:
            if _StorageScan(f, sizes).load() != torch.serialization.MAGIC_NUMBER:
                return  # not a legacy torch file: torch.load refuses it on this first pickle, before it allocates anything, with its own reason
            for _ in range(3):  # protocol version, system info, then the object with its storages
                _StorageScan(f, sizes).load()
    except (Exception, RecursionError) as exc:  # a torn or malformed pickle, which torch's reader refuses as well
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise error(f"cannot read {what} {str(path)!r}: it is not a readable PyTorch file ({reason})") from None
    total = sum(sizes.values())
    if total > file_size:
        raise error(f"cannot read {what} {str(path)!r}: it declares tensors of {_size(total)}, more than the file's {file_size} bytes hold; "
                    "the file is truncated, corrupt or forged")
    if total > limit:
        raise error(f"cannot read {what} {str(path)!r}: its tensors would take {_size(total)} in memory, more than the limit of {_size(limit)} "
                    f"(set {MAX_LOAD_BYTES_ENV} to a larger number of bytes to read it)")


def _not_a_file(path: Path, what: str) -> None:
    """The error for a ``path`` that is no regular file, saying what it is (a FIFO is no missing file)."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    kind = "a folder" if path.is_dir() else "a FIFO (named pipe)" if path.is_fifo() else "a socket" if path.is_socket() else "a device" if path.is_char_device() or path.is_block_device() else "not a regular file"
    raise ValueError(f"{what} {str(path)!r} is {kind}, not a file")


SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit on its JSON header


def check_safetensors_file(path: str | Path, what: str = "weights file", error: type[Exception] = ValueError, max_bytes: int | None = None) -> None:
    """A ``.safetensors`` file's 8-byte header length, checked before safetensors reads it: it must
    fit in the file and in the format's 100 MB, and the tensors after it within ``max_bytes``
    (default `max_load_bytes`): a forged length (2^60) is refused without being allocated."""
    path = Path(path)
    if not path.is_file():
        _not_a_file(path, what)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise error(f"cannot read {what} {str(path)!r}: {file_size} bytes is too short for a safetensors file (an 8-byte header length, then the header)")
    length = struct.unpack("<Q", head)[0]
    if length > min(file_size - 8, SAFETENSORS_MAX_HEADER):
        raise error(f"cannot read {what} {str(path)!r}: its header length field says {length} bytes, but "
                    + (f"the file holds only {file_size - 8} after it" if length > file_size - 8 else f"safetensors allows at most {SAFETENSORS_MAX_HEADER}")
                    + "; the file is truncated, corrupt or not a safetensors file")
    limit = max_load_bytes() if max_bytes is None else max_bytes
    if file_size - 8 - length > limit:
        raise error(f"cannot read {what} {str(path)!r}: its tensors would take {_size(file_size - 8 - length)} in memory, more than the limit of "
                    f"{_size(limit)} (set {MAX_LOAD_BYTES_ENV} to a larger number of bytes to read it)")


def check_torch_file(path: str | Path, what: str = "checkpoint", error: type[Exception] = ValueError, max_bytes: int | None = None) -> None:
    """What ``torch.load(path)`` would allocate, checked without reading any tensor: a zip
    archive's records must be stored uncompressed, as torch.save writes them, with sizes that agree
    between its headers and fit in the file; a legacy pickle's declared storages must fit in the
    file; and the total must stay within ``max_bytes`` (default `max_load_bytes`, 8 GiB).
    A missing file is ``FileNotFoundError``, anything else refused ``error``, naming ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        _not_a_file(path, what)
    file_size = path.stat().st_size
    if file_size == 0:
        raise error(f"cannot read {what} {str(path)!r}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    limit = max_load_bytes() if max_bytes is None else max_bytes
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip archive
        _check_zip_archive(path, what, file_size, limit, error)
    elif head[:1] == b"\x80":  # a legacy pickle
        _check_legacy_pickle(path, what, file_size, limit, error)
    else:
        raise error(f"cannot read {what} {str(path)!r}: it is not a PyTorch file (written by torch.save); it starts with {head!r}")
