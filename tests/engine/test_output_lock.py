"""One writer per output: the lock a training, a predict and an export hold on what they write is
race-free and never written through a link."""

import fcntl
import os

import pytest

from contextseg.engine.checkpoints import files
from contextseg.engine.checkpoints.files import OutputBusy, OutputLock, WorkDirBusy, WorkDirLock, output_lock


def test_a_second_writer_is_refused_and_the_lock_is_gone_after_release(tmp_path):
    first = output_lock(tmp_path / "preds", "--out", "predict").acquire()
    with pytest.raises(OutputBusy, match=rf"--out '.*preds' is being written by another contextseg predict .*pid {os.getpid()}"):
        output_lock(tmp_path / "preds", "--out", "predict").acquire()
    first.release()
    assert not first.path.exists()
    output_lock(tmp_path / "preds", "--out", "predict").acquire().release()


def test_release_removes_the_path_while_still_holding_the_lock(tmp_path, monkeypatch):
    """Closing first and removing after would let a waiting writer lock the old file in between
    while a third one creates and locks a new one: two holders at once."""
    lock = WorkDirLock(tmp_path).acquire()
    seen = []
    close = os.close
    monkeypatch.setattr(files.os, "close", lambda fd: seen.append(lock.path.exists()) or close(fd))
    lock.release()
    assert seen == [False]


def test_a_lock_on_a_file_its_holder_just_removed_is_not_taken(tmp_path, monkeypatch):
    """Writer B opened ``.lock`` just before holder A released it (removed it) and C locked a new
    one: B's flock succeeds on the removed file; B must see that and find C's lock instead."""
    path = tmp_path / ".lock"
    holder = {}
    flock = fcntl.flock

    def flock_then_replaced(fd, op):
        flock(fd, op)
        if not holder:  # between B's flock and its check: A removes the file, C creates and locks a new one
            os.unlink(path)
            holder["fd"] = os.open(path, os.O_RDWR | os.O_CREAT)
            os.write(holder["fd"], b"4242 otherhost 2026-01-01T00:00:00\n")
            flock(holder["fd"], fcntl.LOCK_EX | fcntl.LOCK_NB)

    monkeypatch.setattr(fcntl, "flock", flock_then_replaced)
    with pytest.raises(WorkDirBusy, match="pid 4242 on otherhost"):
        WorkDirLock(tmp_path).acquire()
    os.close(holder["fd"])


def test_a_link_as_the_lock_file_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(target)
    with pytest.raises(WorkDirBusy, match="symbolic link"):
        WorkDirLock(tmp_path / "run").acquire()
    assert target.read_text() == "keep"
    with pytest.raises(OutputBusy, match="symbolic link"):
        OutputLock(tmp_path / "run" / ".lock", "busy").acquire()
