"""Find the run dirs under the paths a user names and read what each run wrote.

A run dir is a folder holding ``metrics.json`` (written last, when a run finishes). A folder that holds
the other files a run writes first (``.hydra/``, ``resolved_config.yaml``, ``run_info.json``) but no
readable ``metrics.json`` is a failed or unfinished run: it is returned as :class:`Skipped` with the
reason, so one broken run in a sweep never hides the others.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "metrics.json"
RUN_MARKERS = (METRICS_FILE, "resolved_config.yaml", ".hydra", "run_info.json")
"""Files a run writes; a folder with any of them is a run (finished or not) and is not searched deeper."""

CONFIG_FILES = ("resolved_config.yaml", ".hydra/config.yaml")
"""Where a run's config is read from, best first: ``.hydra/config.yaml`` keeps ``${...}`` unresolved."""


@dataclass(frozen=True)
class Run:
    """One finished run: its folder, its final figures and its config flattened to dotted keys."""

    path: Path
    metrics: dict[str, float]
    config: dict[str, Any]
    notes: tuple[str, ...] = field(default=())  # what could not be read but did not stop the run's row


@dataclass(frozen=True)
class Skipped:
    """A folder that looks like a run but has no usable metrics, and why."""

    path: Path
    reason: str


class RunReadError(ValueError):
    """A run dir's ``metrics.json`` is missing or unreadable; the message is the reason shown to the user."""


def natural_key(path: Path) -> list[Any]:
    """Sort key where ``multirun/.../10`` comes after ``.../9`` (numbered Hydra sweep jobs)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_runs(paths: Sequence[str | os.PathLike[str]], exclude: Path | None = None) -> tuple[list[Run], list[Skipped]]:
    """Read every run dir under ``paths`` (searched recursively), finished runs and skipped ones apart.

    Args:
        paths: Run dirs, or folders holding them at any depth (``outputs/``, a multirun dir).
        exclude: A folder not to search (the report's own output folder).

    Returns:
        The finished runs and the skipped ones, each in natural path order, without duplicates.

    Raises:
        FileNotFoundError: If a path does not exist.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        root = Path(raw).resolve()
        if not root.exists():
            raise FileNotFoundError(f"{raw} does not exist")
        if root.is_file():  # e.g. a metrics.json named directly: its folder is the run
            root = root.parent
        found.update(dict.fromkeys(_run_dirs(root, exclude.resolve() if exclude else None)))

    runs: list[Run] = []
    skipped: list[Skipped] = []
    for path in sorted(found, key=natural_key):
        try:
            runs.append(load_run(path))
        except RunReadError as err:
            skipped.append(Skipped(path, str(err)))
    return runs, skipped


def _run_dirs(root: Path, exclude: Path | None) -> Iterator[Path]:
    """Folders under ``root`` (itself included) that a run wrote into; hidden folders are not searched."""
    for folder, subdirs, files in os.walk(root):
        here = Path(folder)
        if any(name in files or name in subdirs for name in RUN_MARKERS):
            subdirs.clear()  # a run's own subfolders (retriever/, index/, csv/) hold no runs
            yield here
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and (here / d) != exclude)


def load_run(path: Path) -> Run:
    """Read one run dir.

    Raises:
        RunReadError: If ``metrics.json`` is missing, is not valid JSON or is not an object of numbers.
    """
    metrics = read_metrics(path / METRICS_FILE)
    config, notes = read_config(path)
    return Run(path=path, metrics=metrics, config=config, notes=tuple(notes))


def read_metrics(file: Path) -> dict[str, float]:
    """The numeric figures of a ``metrics.json``; non-numeric entries are ignored (they are not figures)."""
    if not file.exists():
        raise RunReadError(f"no {METRICS_FILE}: the run failed or is still running")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunReadError(f"{METRICS_FILE} is not valid JSON ({err}): the run was cut off while writing?") from err
    if not isinstance(data, dict):
        raise RunReadError(f"{METRICS_FILE} holds a {type(data).__name__}, not an object of metric -> value")
    metrics = {
        str(key): float(value)
        for key, value in data.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    if not metrics:
        raise RunReadError(f"{METRICS_FILE} holds no numeric metric")
    return metrics


def read_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The run's config flattened to dotted keys, and notes on what could not be read (then ``{}``)."""
    for name in CONFIG_FILES:
        file = path / name
        if not file.exists():
            continue
        try:
            tree = yaml.safe_load(file.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            return {}, [f"{name} is not valid YAML ({err.__class__.__name__}); its config columns are empty"]
        if not isinstance(tree, dict):
            return {}, [f"{name} is not a mapping; its config columns are empty"]
        notes = [] if name == CONFIG_FILES[0] else [f"config read from {name} (interpolations unresolved)"]
        return flatten(tree), notes
    return {}, [f"no {' or '.join(CONFIG_FILES)}; its config columns are empty"]


def flatten(tree: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to ``{"retriever.optimizer.lr": 2e-05, ...}``; lists stay values, empty mappings ``{}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, prefix=f"{dotted}.")
        else:
            flat[dotted] = value
    return flat
