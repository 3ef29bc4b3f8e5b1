"""Content keys for cached work: the same config always hashes to the same key, a changed one never does.

Shared by every stage that caches its output under a key of the config that made it (teacher signals,
generated units, trained rankers, PEAR head choices, fine-tuned readers); see docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

CACHE_FORMAT_VERSION = 1
"""Bump when the shard file layout or the meaning of a stored field changes; old entries then miss."""

RUNTIME_KEYS = frozenset(
    {
        "batch_size",
        "max_batch_size",
        "max_batch_tokens",
        "num_workers",
        "accelerator",
        "devices",
        "progress",
        "cache",
        "cache_dir",
        "shard_size",
        "gradient_checkpointing",
    }
)
"""Config keys dropped (at any depth) before hashing, because they change how fast the signal is made, not what it is:
batching and devices only regroup the same per-question computation (an LM padded in a bigger batch differs at most
by float rounding, far below what any loss can tell apart); workers and progress bars are plumbing; ``cache_dir`` is
where the cache lives, not what is in it; ``cache`` switches this cache itself; ``gradient_checkpointing``
recomputes the same activations; ``shard_size`` only regroups questions into files (changing it re-partitions the
questions, so existing shards miss once, but the key stays the same)."""

KEY_HEX_CHARS = 20
"""Length of a cache key: 80 bits, so collisions between configs are out of reach while names stay short."""


def canonical(obj: Any) -> Any:
    """Turn ``obj`` into plain JSON data with runtime keys removed; raise ``TypeError`` on unknown types.

    Unknown objects are refused rather than ``str()``-ed: a repr holding a memory address would change the
    key on every run, and one hiding a setting would let two different configs share a key.
    """
    if isinstance(obj, DictConfig | ListConfig):
        return canonical(OmegaConf.to_container(obj, resolve=True))
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in obj.items() if str(k) not in RUNTIME_KEYS}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return canonical(obj.item())
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(
        f"cannot hash a {type(obj).__name__} into a cache key; pass config values "
        "(dicts, lists, str, numbers, bool, None, OmegaConf containers, dataclasses)"
    )


def sha256_json(obj: Any) -> str:
    """Hex sha256 of ``obj`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_key(*parts: Any) -> str:
    """Return the cache key of ``parts``: sha256 of their canonical JSON, first 20 hex characters.

    Dicts are hashed with sorted keys and without :data:`RUNTIME_KEYS` (at any depth); OmegaConf containers
    are resolved first, so an interpolation hashes as its value. :data:`CACHE_FORMAT_VERSION` is part of the
    hash.

    Args:
        parts: What determines the signal, e.g. ``cfg.data, cfg.candidates, cfg.teacher, cfg.lm``.

    Returns:
        A 20-character lowercase hex string.
    """
    return sha256_json({"format": CACHE_FORMAT_VERSION, "parts": canonical(list(parts))})[:KEY_HEX_CHARS]
