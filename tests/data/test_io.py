"""The one writer of every file the project writes: whole or not at all, never through a link, with
the user's umask."""

import os
import stat

import numpy as np
import pytest

from contextseg.data.io import WriteFailed, append_no_follow, atomic_write, write_atomic


@pytest.fixture
def victim(tmp_path):
    """A file the user cares about, and a link to it where contextseg will write."""
    target = tmp_path / "precious.txt"
    target.write_text("the user's data\n")
    link = tmp_path / "out" / "written.txt"
    link.parent.mkdir()
    link.symlink_to(target)
    return target, link


def test_a_link_at_the_destination_is_refused_and_its_target_untouched(victim):
    target, link = victim
    before = (target.read_bytes(), target.stat().st_mtime_ns)
    with pytest.raises(WriteFailed, match=r"written.txt: it is a symbolic link .*never writes through a link"):
        write_atomic(link, "new contents")
    with pytest.raises(WriteFailed, match="symbolic link"):
        append_no_follow(link, "a log line\n")
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    assert link.is_symlink() and sorted(p.name for p in link.parent.iterdir()) == ["written.txt"]  # no temporary left


def test_a_link_put_there_while_writing_is_refused_too(victim, tmp_path):
    target, _ = victim
    path = tmp_path / "out" / "late.txt"
    with pytest.raises(WriteFailed, match="symbolic link"):
        with atomic_write(path) as tmp:
            tmp.write_text("new")
            path.symlink_to(target)  # a race: another process links the destination meanwhile
    assert target.read_text() == "the user's data\n"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        append_no_follow(tmp_path / "log.jsonl", "{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "log.jsonl").stat().st_mode) == mode


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("old")
    with pytest.raises(WriteFailed, match="nothing partial was left"):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.json"]


@pytest.mark.parametrize("name", ["n" * 236 + ".png", "n" * 251 + ".png", "é" * 125 + "x.png"], ids=["240_bytes", "255_bytes", "255_bytes_two_byte_characters"])
def test_every_name_the_file_system_takes_is_written_atomically(tmp_path, name):
    """The temporary ``.NAME.XXXXXXXX.tmp`` is shortened to the file system's longest name: a
    240- or 255-byte name (the longest Linux takes) is written, whole, with no temporary left."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    assert len(os.fsencode(name)) <= limit
    seen = []
    with atomic_write(tmp_path / name) as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"whole")
    assert (tmp_path / name).read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert len(os.fsencode(seen[0])) <= limit and seen[0].startswith("." + name[:8]) and seen[0].endswith(".tmp")
    seen[0].encode("utf-8")  # never half a character
    write_atomic(tmp_path / name, "again")  # and over an existing file
    assert (tmp_path / name).read_text() == "again"


# -- authorship: what may be written where -----------------------------------------------------------
def _marked_files(tmp_path):
    """One file of each kind contextseg writes, marked as its writers mark them."""
    import json
    import struct

    from PIL import Image

    from contextseg.data.io import YAML_MARK, png_mark

    files = {}
    files["png"] = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(files["png"], pnginfo=png_mark("a test picture"))
    files["yaml"] = tmp_path / "a.yaml"
    files["yaml"].write_text(f"{YAML_MARK} (a resolved config)\nname: x\n")
    files["json"] = tmp_path / "a.json"
    files["json"].write_text(json.dumps({"written_by": "contextseg eval", "mIoU": 1.0}))
    files["saved_json"] = tmp_path / "config.json"
    files["saved_json"].write_text(json.dumps({"contextseg": "0.2.0", "model": {}}, indent=1))
    header = json.dumps({"__metadata__": {"format": "pt", "library": "contextseg"}}).encode()
    files["safetensors"] = tmp_path / "a.safetensors"
    files["safetensors"].write_bytes(struct.pack("<Q", len(header)) + header)
    files["onnx"] = tmp_path / "a.onnx"
    files["onnx"].write_bytes(b"\x08\x09" + b"graph" * 100 + b"contextseg_model" + b"fcn")
    files["png_huge"] = tmp_path / "huge.png"  # the mark is read without decoding a pixel (its IDAT is not even zlib)
    files["png_huge"].write_bytes(_png_bytes(20000, 20000, b"\x00" * 64, text=b"contextseg\x00a label map"))
    return files


def _png_bytes(width, height, idat, text=None, text_after=None):
    """A greyscale PNG written chunk by chunk: IHDR, optional tEXt, one IDAT of ``idat`` as given,
    optional tEXt after it, IEND."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + (chunk(b"tEXt", text) if text else b"")
    tail = (chunk(b"tEXt", text_after) if text_after else b"") + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", idat) + tail


def _foreign_files(tmp_path):
    import json
    import struct
    import zlib

    from PIL import Image

    files = {}
    files["png"] = tmp_path / "b.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(files["png"])
    files["yaml"] = tmp_path / "b.yaml"
    files["yaml"].write_text("# written by me\nname: x\n")
    files["json"] = tmp_path / "b.json"
    files["json"].write_text(json.dumps({"mIoU": 1.0, "written_by": "contextseg"}))  # the mark must open the object
    header = json.dumps({"__metadata__": {"library": "timm"}}).encode()
    files["safetensors"] = tmp_path / "b.safetensors"
    files["safetensors"].write_bytes(struct.pack("<Q", len(header)) + header)
    files["safetensors_forged"] = tmp_path / "c.safetensors"
    files["safetensors_forged"].write_bytes(struct.pack("<Q", 1 << 60) + b"{}")  # a header length never allocated
    files["onnx"] = tmp_path / "b.onnx"
    files["onnx"].write_bytes(b"\x08\x09" + b"graph" * 100)
    files["txt"] = tmp_path / "b.txt"
    files["txt"].write_text("contextseg")
    # 140 KB of PNG holding 12000 x 12000 zeros (144 MB of pixels), its mark after the pixels, where PIL never writes it
    rows = zlib.compressobj(9)
    zeros = b"".join(rows.compress(bytes(12001)) for _ in range(12000)) + rows.flush()
    files["png_bomb"] = tmp_path / "bomb.png"
    files["png_bomb"].write_bytes(_png_bytes(12000, 12000, zeros, text_after=b"contextseg\x00late"))
    return files


def test_contextseg_marks_are_recognised_and_nothing_else_is(tmp_path):
    from contextseg.data.io import written_by_contextseg

    assert {k: written_by_contextseg(p) for k, p in _marked_files(tmp_path).items()} == {k: True for k in _marked_files(tmp_path)}
    assert {k: written_by_contextseg(p) for k, p in _foreign_files(tmp_path).items()} == {k: False for k in _foreign_files(tmp_path)}
    assert not written_by_contextseg(tmp_path / "missing.png") and not written_by_contextseg(tmp_path)


def test_check_output_is_one_rule_for_every_file(tmp_path):
    import os

    from contextseg.data.io import OutputRefused, check_output

    assert check_output(tmp_path / "new.json", "--json") == tmp_path / "new.json"  # missing: written
    ours = _marked_files(tmp_path)["json"]
    with pytest.raises(OutputRefused, match=r"--json .*a.json.* exists already \(written by contextseg\); pass --overwrite"):
        check_output(ours, "--json")
    check_output(ours, "--json", overwrite=True)  # its own file, asked for
    with pytest.raises(OutputRefused, match="is an input of this command"):
        check_output(ours, "--json", overwrite=True, inputs=[ours])  # never what it reads, --overwrite or not
    foreign = _foreign_files(tmp_path)["json"]
    for overwrite in (False, True):
        with pytest.raises(OutputRefused, match="was not written by contextseg; it is never replaced"):
            check_output(foreign, "--json", overwrite=overwrite)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(OutputRefused, match=r"is a FIFO \(named pipe\)"):
        check_output(fifo, "--json", overwrite=True)
    with pytest.raises(OutputRefused, match="is a folder"):
        check_output(tmp_path, "--json", overwrite=True)
    link = tmp_path / "link.json"
    link.symlink_to(ours)
    with pytest.raises(OutputRefused, match="symbolic link"):
        check_output(link, "--json", overwrite=True)
