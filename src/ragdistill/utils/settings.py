"""Settings dataclasses built from config mappings, with unknown names refused by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_mapping(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """``cls(**values)``; a name ``cls`` has no field for is a ``ValueError`` naming it and the known ones.

    Args:
        cls: A dataclass.
        values: Field values, e.g. a config node.
        what: What the settings are, for the message (``PEAR settings``).
    """
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {known}")
    return cls(**values)
