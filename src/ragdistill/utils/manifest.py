"""Checksummed artifact folders: ``manifest.json`` lists the byte count and sha256 of every file a save wrote.

Every folder the framework saves and later trusts (a faiss index, a resume checkpoint, a converted LM, a
trained ranker) ends its save with this manifest, written last and atomically. Loading checks it first:
sizes for all files (a truncation is caught without reading GBs), then the hashes, streamed in constant
memory. A folder whose manifest is missing, unreadable or disagrees with its files is corrupt, and the
caller reports it and rebuilds instead of loading a wrong artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ragdistill.utils.atomic import atomic_write_text

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
"""Version of the ``manifest.json`` layout."""
_HASH_CHUNK = 1 << 20  # bytes read per step while hashing: files may be GBs, never read whole


class CorruptArtifactError(ValueError):
    """A saved folder that must not be used: truncated, corrupted, incomplete or half-written."""


class NewerManifestError(ValueError):
    """A manifest written by a newer ragdistill, whose layout this one cannot read."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of ``path``, read in 1 MiB pieces (constant memory for any file size)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of ``path``: its byte count and sha256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(directory: Path, names: Iterable[str] | None = None, **fields: Any) -> dict[str, Any]:
    """Write ``directory/manifest.json`` atomically, covering ``names`` (default: every file below it but the manifest).

    Call it last, after every listed file is complete on disk: a folder with a manifest is a finished save.

    Args:
        directory: The artifact folder.
        names: Paths relative to ``directory`` (``/``-separated, subfolders allowed) of the files to list.
        **fields: Extra JSON-able fields to record beside the files (e.g. what the artifact was made from).

    Returns:
        The manifest written.
    """
    if names is None:
        found = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        names = sorted(name for name in found if name != MANIFEST_FILE)
    manifest = {**fields, "format_version": MANIFEST_VERSION, "files": {n: file_entry(directory / n) for n in names}}
    atomic_write_text(directory / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return manifest


def read_manifest(directory: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Read and check the layout of ``directory/manifest.json``; ``required`` files must be listed.

    Raises:
        CorruptArtifactError: The manifest is missing, unreadable or malformed, or does not list a required file.
        NewerManifestError: The manifest's format version is newer than this ragdistill reads.
    """
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CorruptArtifactError(f"{MANIFEST_FILE} is missing (an interrupted save, or a deleted file)") from err
    except (OSError, ValueError) as err:
        raise CorruptArtifactError(f"{MANIFEST_FILE} is unreadable ({err})") from err
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(entries, dict)
        or any(
            not isinstance(e, dict) or not isinstance(e.get("bytes"), int) or not isinstance(e.get("sha256"), str)
            for e in entries.values()
        )
        or any(not _inside(name) for name in entries)
    ):
        raise CorruptArtifactError(f"{MANIFEST_FILE} is malformed (it must map every file to its 'bytes' and 'sha256')")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise NewerManifestError(
            f"{directory / MANIFEST_FILE} has format version {version!r}; this ragdistill reads up to "
            f"{MANIFEST_VERSION}: load it with the newer ragdistill that wrote it"
        )
    if unlisted := [name for name in required if name not in entries]:
        raise CorruptArtifactError(f"{MANIFEST_FILE} does not list {', '.join(unlisted)}")
    return manifest


def _inside(name: str) -> bool:
    """Whether a listed name stays inside the artifact folder (no absolute paths, no ``..``)."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts


def file_problems(directory: Path, entries: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with the files ``entries`` describes: missing, wrong size, then (if sizes agree) checksums."""
    problems = []
    for name, entry in entries.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing (the manifest lists it with {entry['bytes']} bytes)")
        elif (size := path.stat().st_size) != entry["bytes"]:
            kind = "truncated" if size < entry["bytes"] else "wrong size"
            problems.append(f"{name} is {kind}: expected {entry['bytes']} bytes, found {size}")
    if problems:
        return problems
    for name, entry in entries.items():
        if (found := sha256_file(directory / name)) != entry["sha256"]:
            problems.append(
                f"{name} fails its checksum: expected sha256 {entry['sha256']}, found {found} "
                "(same size, different content)"
            )
    return problems


def verify_manifest(directory: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Check ``directory`` against its manifest; return the manifest when every listed file is intact.

    Raises:
        CorruptArtifactError: The message lists every problem found (missing, truncated, checksum).
        NewerManifestError: See :func:`read_manifest`.
    """
    manifest = read_manifest(directory, required)
    if problems := file_problems(directory, manifest["files"]):
        raise CorruptArtifactError("; ".join(problems))
    return manifest


def artifact_problem(directory: Path, required: Iterable[str] = ()) -> str | None:
    """Why ``directory`` must not be used (one line), or ``None`` when its manifest and files agree."""
    try:
        verify_manifest(directory, required)
    except (CorruptArtifactError, NewerManifestError) as err:
        return str(err)
    return None
