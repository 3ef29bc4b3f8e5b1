"""Record what a run needs to be reproduced: the resolved config, package versions and the git commit."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ragdistill.runtime.distributed import is_global_zero
from ragdistill.utils.atomic import atomic_write_text

TRACKED_PACKAGES = (
    "ragdistill",
    "torch",
    "transformers",
    "sentence-transformers",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "faiss-cpu",
    "bm25s",
    "ranx",
    "numpy",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    """Installed version of each package the results depend on (None where missing)."""
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(start: Path | None = None) -> dict[str, Any]:
    """The commit of the ragdistill checkout and whether it had uncommitted changes (None outside git)."""
    where = str(start or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def job_config(cfg: DictConfig) -> DictConfig:
    """The experiment's config without Hydra's own node.

    A config composed in tests or notebooks carries ``hydra`` (whose sweep keys cannot resolve outside a
    sweep); the CLI saves that node in ``.hydra/`` anyway.
    """
    return OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])


def save_run_info(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Write ``run_info.json`` (versions, git, command) and ``resolved_config.yaml`` into the run dir.

    Only global rank 0 writes (the other ranks of a DDP run share the run dir); every rank gets the record.
    """
    info = {
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
    }
    if not is_global_zero():
        return info
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
    atomic_write_text(run_dir / "resolved_config.yaml", OmegaConf.to_yaml(job_config(cfg), resolve=True))
    return info


class UnwritableDirError(OSError):
    """A directory the run must write (run dir, cache dir) that cannot be written; the message says which key."""


def probe_writable(directory: Path, key: str) -> None:
    """Create ``directory`` if needed and write and delete a probe file in it, before any work.

    An unwritable cache dir used to surface only after training (the resume checkpoint's save), and an
    unwritable run dir as a traceback from Hydra; both are knowable in a millisecond at start.

    Args:
        directory: The directory to probe.
        key: The config key that names it (``paths.cache_dir``), for the message.

    Raises:
        UnwritableDirError: Naming the key, the directory, the reason and what to do.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UnwritableDirError(
            f"{key}={str(directory)!r} cannot be written ({reason}): point {key} at a writable directory"
        ) from None


def start_run(cfg: DictConfig) -> Path:
    """What every entry point's run does first: probe the run and cache dirs, then record the run there.

    Shared by training, evaluation, PEAR and reader fine-tuning, so each of their run dirs holds
    ``run_info.json`` and ``resolved_config.yaml`` and none of them starts work it could not save.
    """
    run_dir = Path(cfg.paths.output_dir)
    probe_writable(run_dir, "hydra.run.dir")
    probe_writable(Path(cfg.paths.cache_dir), "paths.cache_dir")
    save_run_info(run_dir, cfg)
    return run_dir
