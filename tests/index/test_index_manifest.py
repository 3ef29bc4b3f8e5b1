"""FaissIndex's manifest: every saved file's size and sha256, checked on load before anything is read."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragdistill.index import faiss_index
from ragdistill.index.faiss_index import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    META_FILE,
    CorruptIndexError,
    FaissIndex,
)
from ragdistill.utils import manifest as manifest_module
from ragdistill.utils.manifest import MANIFEST_VERSION

SHARD_1 = "index-00001.faiss"


def _data(n: int = 400, dim: int = 16) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, dim)).astype(np.float32)  # [N, D]
    q = rng.normal(size=(9, dim)).astype(np.float32)  # [Q, D]
    return x, q, [f"p{i}" for i in range(n)]


def _save(directory: Path, shards: int = 1, kind: str = "flat") -> FaissIndex:
    x, _, ids = _data()
    index = FaissIndex(kind, ivf_nlist=4, pq_m=8, shards=shards)
    index.build(x, ids)
    index.save(directory)
    return index


def _manifest(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    return manifest


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _to_old_format(directory: Path) -> None:
    """What a save before manifests left: meta.json with format version 1 and no manifest."""
    (directory / MANIFEST_FILE).unlink()
    meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    (directory / META_FILE).write_text(json.dumps({**meta, "format_version": 1}), encoding="utf-8")


@pytest.mark.parametrize(
    ("shards", "index_files"),
    [(1, [INDEX_FILE]), (3, ["index-00000.faiss", SHARD_1, "index-00002.faiss"])],
)
def test_manifest_lists_exactly_the_saved_files_with_sizes_and_hashes(
    tmp_path: Path, shards: int, index_files: list[str]
) -> None:
    out = tmp_path / "idx"
    _save(out, shards=3 if shards == 1 else 1)  # an earlier save with the other layout, replaced below
    _save(out, shards=shards)

    manifest = _manifest(out)

    assert manifest["format_version"] == MANIFEST_VERSION
    on_disk = sorted(p.name for p in out.iterdir())
    assert on_disk == sorted([*index_files, IDS_FILE, META_FILE, MANIFEST_FILE])
    assert sorted(manifest["files"]) == sorted([*index_files, IDS_FILE, META_FILE])
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert json.loads((out / META_FILE).read_text(encoding="utf-8"))["format_version"] == 2


@pytest.mark.parametrize(("kind", "shards"), [("flat", 1), ("flat", 3), ("ivfpq", 2)])
def test_roundtrip_returns_identical_results(tmp_path: Path, kind: str, shards: int) -> None:
    index = _save(tmp_path / "idx", shards=shards, kind=kind)
    _, q, _ = _data()

    loaded = FaissIndex.load(tmp_path / "idx")

    want_scores, want_ids = index.search(q, 10)
    got_scores, got_ids = loaded.search(q, 10)
    assert got_ids == want_ids
    np.testing.assert_array_equal(got_scores, want_scores)


@pytest.mark.parametrize(("shards", "name"), [(1, INDEX_FILE), (3, SHARD_1), (1, IDS_FILE), (1, META_FILE)])
def test_truncated_file_is_named_with_expected_and_found_size(tmp_path: Path, shards: int, name: str) -> None:
    out = tmp_path / "idx"
    _save(out, shards=shards)
    size = (out / name).stat().st_size
    with (out / name).open("r+b") as f:
        f.truncate(size // 2)

    with pytest.raises(CorruptIndexError) as caught:
        FaissIndex.load(out)

    message = str(caught.value)
    assert f"{name} is truncated: expected {size} bytes, found {size // 2}" in message
    assert f"delete {out} and rebuild it" in message
    assert isinstance(caught.value, ValueError)


def test_truncation_is_reported_without_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "idx"
    _save(out, shards=3)
    (out / SHARD_1).write_bytes((out / SHARD_1).read_bytes() + b"extra")

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} although a size was already wrong")

    monkeypatch.setattr(manifest_module, "sha256_file", no_hashing)
    size = _manifest(out)["files"][SHARD_1]["bytes"]
    with pytest.raises(CorruptIndexError, match=rf"{SHARD_1} is wrong size: expected {size} bytes, found {size + 5}"):
        FaissIndex.load(out)


@pytest.mark.parametrize(("shards", "name"), [(1, INDEX_FILE), (3, SHARD_1), (1, IDS_FILE), (1, META_FILE)])
def test_flipped_byte_fails_the_checksum(tmp_path: Path, shards: int, name: str) -> None:
    out = tmp_path / "idx"
    _save(out, shards=shards)
    before = (out / name).stat().st_size
    _flip_middle_byte(out / name)
    assert (out / name).stat().st_size == before
    expected = _manifest(out)["files"][name]["sha256"]
    found = hashlib.sha256((out / name).read_bytes()).hexdigest()

    with pytest.raises(CorruptIndexError) as caught:
        FaissIndex.load(out)

    message = str(caught.value)
    assert f"{name} fails its checksum: expected sha256 {expected}, found {found}" in message
    assert f"delete {out} and rebuild it" in message
    other = {INDEX_FILE, SHARD_1, IDS_FILE, META_FILE} - {name}
    assert not any(f"{o} fails" in message for o in other)


@pytest.mark.parametrize(("shards", "name"), [(1, INDEX_FILE), (3, SHARD_1), (1, IDS_FILE), (1, META_FILE)])
def test_deleted_file_is_named(tmp_path: Path, shards: int, name: str) -> None:
    out = tmp_path / "idx"
    _save(out, shards=shards)
    (out / name).unlink()

    with pytest.raises(CorruptIndexError, match=rf"{name} is missing \(the manifest lists it with \d+ bytes\)"):
        FaissIndex.load(out)


def test_deleted_manifest_of_a_new_format_dir_is_an_interrupted_save(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _save(out, shards=2)
    (out / MANIFEST_FILE).unlink()

    with pytest.raises(CorruptIndexError, match=rf"{MANIFEST_FILE} is missing beside .*an interrupted save"):
        FaissIndex.load(out)


def test_unreadable_manifest_is_named(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _save(out)
    text = (out / MANIFEST_FILE).read_text(encoding="utf-8")
    (out / MANIFEST_FILE).write_text(text[: len(text) // 2], encoding="utf-8")

    with pytest.raises(CorruptIndexError, match=rf"{MANIFEST_FILE} is unreadable"):
        FaissIndex.load(out)


def test_manifest_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _save(out)
    manifest = _manifest(out)
    (out / MANIFEST_FILE).write_text(json.dumps({**manifest, "format_version": 99}), encoding="utf-8")

    with pytest.raises(ValueError, match=r"format version 99; this ragdistill reads up to 1"):
        FaissIndex.load(out)


@pytest.mark.parametrize("shards", [1, 3])
def test_a_dir_without_a_manifest_is_refused_with_the_rebuild_hint(tmp_path: Path, shards: int) -> None:
    """An interrupted save or a save from before manifests: the files cannot be checked, so nothing is read."""
    out = tmp_path / "idx"
    _save(out, shards=shards)
    _to_old_format(out)

    with pytest.raises(CorruptIndexError, match=rf"{MANIFEST_FILE} is missing beside .*delete .* and rebuild it"):
        FaissIndex.load(out)


@pytest.mark.parametrize("fail_at", [MANIFEST_FILE, META_FILE, IDS_FILE, SHARD_1])
def test_interrupted_resave_never_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    out = tmp_path / "idx"
    _save(out, shards=3)  # a good earlier save in the same folder
    real_write = faiss_index.atomic_write_with

    def interrupted(path: Path, write: Any) -> None:
        if Path(path).name == fail_at:
            raise KeyboardInterrupt
        real_write(path, write)

    real_write_text = manifest_module.atomic_write_text

    def interrupted_text(path: Path, text: str) -> None:
        if Path(path).name == fail_at:
            raise KeyboardInterrupt
        real_write_text(path, text)

    monkeypatch.setattr(faiss_index, "atomic_write_with", interrupted)  # the shards
    monkeypatch.setattr(faiss_index, "atomic_write_text", interrupted_text)  # ids.json, meta.json
    monkeypatch.setattr(manifest_module, "atomic_write_text", interrupted_text)  # the manifest's own writer
    with pytest.raises(KeyboardInterrupt):
        _save(out, shards=3)
    monkeypatch.undo()

    assert not (out / MANIFEST_FILE).exists()
    with pytest.raises(CorruptIndexError, match=rf"{MANIFEST_FILE} (and {META_FILE} )?(is|are) missing"):
        FaissIndex.load(out)
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_directory_without_an_index_is_file_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for directory in (tmp_path / "empty", tmp_path / "nowhere"):
        with pytest.raises(FileNotFoundError, match=f"no faiss index in {re.escape(str(directory))}"):
            FaissIndex.load(directory)
