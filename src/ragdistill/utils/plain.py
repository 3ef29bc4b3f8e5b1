"""Turn config containers into plain Python values for JSON (request bodies, cache keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with every mapping a ``dict`` and every non-string sequence a ``list``.

    Hydra hands objects ``DictConfig``/``ListConfig`` arguments (e.g. ``stop: [...]`` in generation
    settings), which ``json.dumps`` refuses.
    """
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(item) for item in value]
    return value
