"""Progress for long steps: Rich bars on a terminal, plain log lines where nothing can be redrawn.

A run whose output goes to a file or a pipe (``nohup``, a cluster job, Hydra's log file) cannot redraw a
bar: Rich then prints only the finished bar, so a 30-minute stage shows nothing until it ends. There, the
same bars also log a plain line (done/total, elapsed, time left, rate) at most once a minute, and a
closing line for work long enough to have logged one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

import numpy as np
from rich import get_console
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

logger = logging.getLogger(__name__)

Chunkable = TypeVar("Chunkable", bound=Sequence[Any] | np.ndarray)
"""Anything with a length that slices into chunks of its own type: lists of questions, ``[N, D]`` arrays."""

PLAIN_EVERY_S = 60.0
"""Seconds between plain progress lines: a line a minute keeps an hour-long stage to ~60 lines."""


def interactive_console(console: Console | None = None) -> bool:
    """Whether Rich can redraw a bar there: a (non-dumb) terminal or a notebook; not a log file or a pipe."""
    console = console or get_console()
    return console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)


def progress_line(description: str, done: float, total: float | None, elapsed: float, extra: str = "") -> str:
    """One plain progress line, e.g. ``Encoding: 560/1,000 (56%), 0:05:12 elapsed, ~0:04:05 left, 1.8 items/s``.

    Args:
        description: What is being done (Rich markup is stripped).
        done: Units done so far.
        total: Units in all; ``None`` or infinite when unknown (then no percentage or time left).
        elapsed: Seconds since the work started.
        extra: Appended as is (a rate, a loss).
    """
    label = Text.from_markup(description).plain
    known = total if total is not None and math.isfinite(total) and total > 0 else None
    parts = [f"{label}: {done:,.0f}/{known:,.0f} ({100 * done / known:.0f}%)" if known else f"{label}: {done:,.0f}"]
    parts.append(f"{_clock(elapsed)} elapsed")
    if known and 0 < done < known:
        parts.append(f"~{_clock(elapsed * (known - done) / done)} left")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class PlainProgressLog:
    """Plain progress lines for one piece of work: at most one per ``every_s`` seconds, then a closing line.

    Work that ends before its first line logs nothing (its end shows in Rich's final bar or the caller's own
    summary); work long enough to have logged a line also logs when it finishes.
    """

    def __init__(self, description: str, every_s: float = PLAIN_EVERY_S) -> None:
        self.description = description
        self.every_s = every_s
        self.started = self.last = time.monotonic()
        self.lines = 0
        self.closed = False

    def update(self, done: float, total: float | None, extra: str = "") -> None:
        """Log a line if one is due: ``every_s`` since the last, or the work just finished after a line."""
        if self.closed:
            return
        now = time.monotonic()
        finished = total is not None and math.isfinite(total) and done >= total
        if (finished and self.lines) or now - self.last >= self.every_s:
            logger.info(progress_line(self.description, done, total, now - self.started, extra))
            self.last = now
            self.lines += 1
        self.closed = finished


class LoggedProgress(Progress):
    """Rich's ``Progress`` that also logs plain lines (:class:`PlainProgressLog`) when its console cannot redraw."""

    def __init__(self, *columns: str | ProgressColumn, every_s: float = PLAIN_EVERY_S, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.every_s = every_s
        self.plain = not interactive_console(self.console)
        self._plain_logs: dict[TaskID, PlainProgressLog] = {}

    def update(  # noqa: D102
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        super().update(
            task_id,
            total=total,
            completed=completed,
            advance=advance,
            description=description,
            visible=visible,
            refresh=refresh,
            **fields,
        )
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:  # noqa: D102
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        if not self.plain or self.disable:
            return
        task = next(task for task in self.tasks if task.id == task_id)
        log = self._plain_logs.setdefault(task_id, PlainProgressLog(task.description, self.every_s))
        log.update(task.completed, task.total, str(task.fields.get("rate", "")))


def progress_bar() -> LoggedProgress:
    """A progress bar showing done/total, items per second, elapsed time and time left (log lines off a tty)."""
    return LoggedProgress(
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
