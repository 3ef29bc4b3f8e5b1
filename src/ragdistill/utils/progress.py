"""Rich progress bars for the long steps that run outside Lightning (BM25, indexing, evaluation)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_bar() -> Progress:
    """A progress bar showing done/total, items per second and time left, transient in a terminal."""
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


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of ``items`` of length ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def track_chunks(items: Sequence[T], size: int, description: str) -> Iterable[Sequence[T]]:
    """Iterate ``items`` in chunks of ``size`` under a progress bar counting items (not chunks)."""
    with progress_bar() as progress:
        task = progress.add_task(description, total=len(items), rate="")
        done = 0
        for chunk in chunks(items, size):
            yield chunk
            done += len(chunk)
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, advance=len(chunk), rate=f"{done / elapsed:,.0f} items/s")
