"""Cached artifact folders of the reader stages: saved whole with a manifest, reused only while intact.

PEAR's coefficients and a fine-tuned reader are both computed once per key and kept in
``<cache_dir>/<kind>/<key>/``. A folder is written in a staging folder beside its target, closed with
``manifest.json`` (every file's size and sha256) and renamed into place, so a reader of the cache never sees
half a save; on reuse the manifest is checked, and a damaged folder is logged, deleted and made again.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragdistill.utils.manifest import artifact_problem, write_manifest

logger = logging.getLogger(__name__)


def intact_folder(directory: Path, required: Iterable[str], what: str) -> bool:
    """Whether ``directory`` holds a finished, undamaged save; a damaged one is logged and deleted.

    Args:
        directory: The cached folder.
        required: Files the manifest must list.
        what: What the folder holds, for the log line (``"PEAR folder"``).

    Returns:
        ``True`` when the folder can be used as it is; ``False`` when it must be made (again).
    """
    if not directory.exists():
        return False
    problem = artifact_problem(directory, required=list(required))
    if problem is None:
        return True
    logger.warning("%s <%s> is damaged (%s); making it again", what, directory, problem)
    shutil.rmtree(directory)
    return False


def save_folder(
    directory: Path, write: Callable[[Path], None], required: Iterable[str], what: str, **fields: Any
) -> None:
    """Let ``write`` fill a staging folder, add the manifest (with ``fields``), rename it to ``directory``.

    When another process saved ``directory`` first, its folder is kept if intact (both computed the same
    thing under the same key).

    Args:
        directory: The final folder (must not exist yet).
        write: Writes every file of the artifact into the folder it is given.
        required: Files the finished folder must hold (checked when another process won the rename).
        what: What the folder holds, for the log lines.
        **fields: Recorded in ``manifest.json`` beside the files (what the artifact was made from).

    Raises:
        OSError: If the rename fails and no intact folder is in place.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        write(staging)
        write_manifest(staging, **fields)
        try:
            staging.rename(directory)
        except OSError:
            if artifact_problem(directory, required=list(required)) is not None:
                raise
            logger.info("Another process saved %s <%s> first; keeping it", what, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
