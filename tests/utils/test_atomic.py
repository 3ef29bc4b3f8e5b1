import os
from pathlib import Path

import pytest

from ragdistill.utils.atomic import atomic_write_bytes, atomic_write_text


def test_writes_content_creates_parents_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    atomic_write_text(target, "héllo\nworld\r\n")
    assert target.read_bytes() == "héllo\nworld\r\n".encode()  # no newline translation
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_new_file_is_readable_by_others_and_existing_mode_is_kept(tmp_path: Path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "one")
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    atomic_write_text(target, "two")
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_text() == "two"


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path: Path, monkeypatch, failing: str):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old content")

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(target, "new content that never lands")
    monkeypatch.undo()
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_interrupt_mid_write_removes_temp_and_creates_nothing(tmp_path: Path, monkeypatch):
    target = tmp_path / "new.txt"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"x" * 10_000)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
