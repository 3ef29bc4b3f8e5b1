"""Checksummed artifact folders: a manifest written last, every listed file checked before use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragdistill.utils import manifest
from ragdistill.utils.manifest import (
    MANIFEST_FILE,
    CorruptArtifactError,
    NewerManifestError,
    artifact_problem,
    verify_manifest,
    write_manifest,
)


def _artifact(folder: Path) -> Path:
    folder.mkdir()
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (folder / "config.json").write_text('{"dim": 4}')
    write_manifest(folder, source="test")
    return folder


def test_a_fresh_artifact_verifies_and_lists_every_file_but_the_manifest(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    found = verify_manifest(folder, required=["weights.bin"])
    assert sorted(found["files"]) == ["config.json", "weights.bin"]
    assert found["source"] == "test"
    assert found["files"]["weights.bin"]["sha256"] == hashlib.sha256((folder / "weights.bin").read_bytes()).hexdigest()
    assert artifact_problem(folder) is None


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: (f / "weights.bin").write_bytes((f / "weights.bin").read_bytes()[:100]), "weights.bin is truncated"),
        (lambda f: (f / "weights.bin").unlink(), "weights.bin is missing"),
        (lambda f: (f / MANIFEST_FILE).unlink(), "manifest.json is missing"),
        (lambda f: (f / MANIFEST_FILE).write_text("{not json"), "manifest.json is unreadable"),
        (lambda f: (f / MANIFEST_FILE).write_text('{"format_version": 1, "files": []}'), "malformed"),
    ],
)
def test_every_kind_of_damage_is_named(tmp_path: Path, damage: Any, problem: str) -> None:
    folder = _artifact(tmp_path / "a")
    damage(folder)
    with pytest.raises(CorruptArtifactError, match=problem):
        verify_manifest(folder)
    assert problem in str(artifact_problem(folder))


def test_a_flipped_byte_of_the_same_size_fails_its_checksum(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    data = bytearray((folder / "weights.bin").read_bytes())
    data[5000] ^= 0x01
    (folder / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"weights\.bin fails its checksum"):
        verify_manifest(folder)


def test_a_required_file_the_manifest_does_not_list_is_corrupt(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    with pytest.raises(CorruptArtifactError, match=r"does not list model\.ckpt"):
        verify_manifest(folder, required=["model.ckpt"])


def test_a_newer_manifest_is_refused_with_its_version(tmp_path: Path) -> None:
    folder = _artifact(tmp_path / "a")
    record = json.loads((folder / MANIFEST_FILE).read_text())
    (folder / MANIFEST_FILE).write_text(json.dumps({**record, "format_version": 7}))
    with pytest.raises(NewerManifestError, match="format version 7"):
        verify_manifest(folder)


def test_hashing_streams_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(10_000)
    path.write_bytes(data)
    reads: list[int] = []
    real_open = Path.open

    class Spy:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            chunk: bytes = self.f.read(size)
            return chunk

    monkeypatch.setattr(manifest, "_HASH_CHUNK", 1024)
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Spy(real_open(self, *a, **k)))

    assert manifest.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert reads and all(0 < size <= 1024 for size in reads)
    assert len(reads) == 11  # ten 1 KiB reads (the last one short) and the empty read that ends the loop


def test_files_in_subfolders_are_listed_and_names_never_leave_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    (folder / "query").mkdir(parents=True)
    (folder / "query" / "model.bin").write_bytes(b"weights")
    assert list(write_manifest(folder)["files"]) == ["query/model.bin"]
    record = json.loads((folder / MANIFEST_FILE).read_text())
    record["files"]["../outside.bin"] = record["files"].pop("query/model.bin")
    (folder / MANIFEST_FILE).write_text(json.dumps(record))
    with pytest.raises(CorruptArtifactError, match="malformed"):
        verify_manifest(folder)
