"""Rich progress bars for the long steps that run outside Lightning (BM25, indexing, evaluation)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Chunkable = TypeVar("Chunkable", bound=Sequence[Any] | np.ndarray)
"""Anything with a length that slices into chunks of its own type: lists of questions, ``[N, D]`` arrays."""


def progress_bar() -> Progress:
    """A progress bar showing done/total, items per second, elapsed time and time left."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def chunks(items: Chunkable, size: int) -> Iterator[Chunkable]:
    """Yield consecutive slices of ``items`` of length ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield cast(Chunkable, items[start : start + size])


def track_chunks(items: Chunkable, size: int, description: str, disable: bool = False) -> Iterable[Chunkable]:
    """Iterate ``items`` in chunks of ``size`` under a progress bar counting items (not chunks).

    Args:
        items: What to iterate.
        size: Items per chunk.
        description: The bar's label.
        disable: Iterate without showing a bar (e.g. when everything fits in one chunk).
    """
    progress = progress_bar()
    progress.disable = disable
    with progress:
        task = progress.add_task(description, total=len(items), rate="")
        done = 0
        for chunk in chunks(items, size):
            yield chunk
            done += len(chunk)
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, advance=len(chunk), rate=f"{done / elapsed:,.0f} items/s")
