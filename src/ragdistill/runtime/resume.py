"""Resume an interrupted training run where it stopped: the same command again continues mid-epoch.

A run's training state (weights, optimizer, scheduler, loop position, random streams) is saved every
``every_n_steps`` optimizer steps and at the end of ``fit`` to ``<cache_dir>/resume/<key>/resume.ckpt``,
beside a checksummed manifest (:mod:`ragdistill.utils.manifest`). The key hashes the resolved config (the
run dir left out, since every run gets a new one) and the teacher signals, so only the same experiment on
the same signals resumes. The pipeline hands the checkpoint to ``Trainer.fit(ckpt_path=...)`` with
``weights_only=True``; a corrupt one is reported, deleted and training starts over. A run that finished
deletes its folder.

What makes the continuation equal to an uninterrupted run: the data module records how many batches of
which epoch were trained and its sampler skips them (``DistillationDataModule.state_dict``), and this
callback restores the random streams (dropout) just before the first batch after the restart, after the
data loader has drawn its own seed, as it did in the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from ragdistill.data.signal import TeacherSignal
from ragdistill.runtime.distributed import is_global_zero
from ragdistill.utils.atomic import fsync_dir
from ragdistill.utils.manifest import artifact_problem, write_manifest

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "resume.ckpt"
KEY_HEX_CHARS = 20


def resume_key(cfg: DictConfig, signals: Sequence[TeacherSignal]) -> str:
    """What identifies "the same run": the resolved config without the run and cache dirs, and the teacher signals.

    Unlike the teacher cache key, nothing is left out as runtime-only: batch size, devices and precision all
    change the training trajectory.
    """
    settings = {key: cfg[key] for key in cfg if key != "hydra"}  # tests compose with Hydra's own node
    config = json.dumps(OmegaConf.to_container(OmegaConf.create(settings), resolve=True), sort_keys=True, default=str)
    places = {str(cfg.paths.output_dir): "<run_dir>", str(cfg.paths.cache_dir): "<cache_dir>"}
    for place in sorted(places, key=len, reverse=True):  # a cache inside the run dir is replaced first
        config = config.replace(place, places[place])
    digest = hashlib.sha256(config.encode())
    for signal in signals:
        digest.update(json.dumps([signal.qid, list(signal.candidate_ids), list(signal.positive_ids)]).encode())
        digest.update(np.ascontiguousarray(signal.scores, dtype=np.float64).tobytes())
    return digest.hexdigest()[:KEY_HEX_CHARS]


def _rng_states() -> dict[str, Any]:
    """The process's random streams, as plain types a ``weights_only`` load accepts."""
    kind, keys, position, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


class ResumeCheckpoint(Callback):
    """Save the full training state every ``every_n_steps`` steps and at the end of training.

    Before :meth:`use` gives it a folder it saves nothing (the pipeline knows the folder only once the
    teacher has scored, after the trainer is built). Saves are atomic: the checkpoint is written aside,
    renamed into place, then the manifest is written; a kill at any point leaves the previous complete
    checkpoint or a folder that :func:`checkpoint_to_resume` rejects.

    Args:
        every_n_steps: Optimizer steps between saves; each save of MiniLM with AdamW state writes ~270 MB.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"resume every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.directory: Path | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._failed = False

    def use(self, directory: Path) -> None:
        """Save into ``directory`` from now on."""
        self.directory = directory

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Save every ``every_n_steps`` optimizer steps."""
        if trainer.global_step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save the finished state: a rerun killed later (during indexing) skips training altogether."""
        self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        """Stored in each checkpoint: the random streams at the moment of the save."""
        return {"rng": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved random streams until the first batch after the restart (see the module docstring)."""
        self._pending_rng = state_dict.get("rng")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Restore the saved random streams once, right before the first batch trained after a restart."""
        if self._pending_rng is not None:
            _set_rng_states(self._pending_rng)
            self._pending_rng = None

    def _save(self, trainer: pl.Trainer) -> None:
        """Save the state, or warn once and go on: a resume checkpoint only saves a rerun time.

        An unwritable or full cache dir used to end a finished fit with a traceback, losing the trained
        weights (and, with an LM teacher, hours of scoring) for want of a file that is deleted on success.
        """
        if self.directory is None or trainer.sanity_checking or self._failed:
            return
        try:
            self._write(trainer)
        except OSError as error:
            self._failed = True
            logger.warning(
                "Could not save the resume checkpoint to <%s> (%s); training goes on, but a rerun after a crash "
                "will start training over",
                self.directory,
                error.strerror or error,
            )

    def _write(self, trainer: pl.Trainer) -> None:
        if self.directory is None:
            return
        if is_global_zero():
            self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{CHECKPOINT_FILE}.partial"
        trainer.save_checkpoint(partial, weights_only=False)  # every rank takes part; rank 0 writes
        if is_global_zero():
            (self.directory / "manifest.json").unlink(missing_ok=True)  # no manifest = an unfinished save
            partial.replace(self.directory / CHECKPOINT_FILE)
            fsync_dir(self.directory)
            write_manifest(self.directory, [CHECKPOINT_FILE], global_step=trainer.global_step)
            logger.debug("Saved the resume checkpoint at step %d to <%s>", trainer.global_step, self.directory)


def checkpoint_to_resume(directory: Path) -> Path | None:
    """The verified checkpoint in ``directory``, or ``None`` (none there; a corrupt one is reported and deleted)."""
    if not directory.exists():
        return None
    if problem := artifact_problem(directory, required=[CHECKPOINT_FILE]):
        logger.warning(
            "Resume checkpoint <%s> is unusable (%s); deleting it and training from the start", directory, problem
        )
        shutil.rmtree(directory, ignore_errors=True)
        return None
    return directory / CHECKPOINT_FILE


def start_from(module: pl.LightningModule, ckpt_path: str | Path | None) -> Path | None:
    """Where ``Trainer.fit`` should resume from, given the user's ``ckpt_path`` (None: train from the start).

    A full Lightning checkpoint (optimizer state, loop position) resumes the run it came from: its path is
    returned for ``fit(ckpt_path=...)``. A weights-only one (``checkpoints/*.ckpt`` of a run trained with
    ``callbacks=checkpoints``) has nothing to resume, and Lightning would refuse it; its weights are loaded
    into ``module`` here and training starts from them.
    """
    if ckpt_path is None:
        return None
    path = Path(ckpt_path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if "optimizer_states" in checkpoint:
        logger.info("Resuming training from the checkpoint <%s> (ckpt_path)", path)
        return path
    module.load_state_dict(checkpoint["state_dict"])
    logger.info("Starting training from the weights of <%s> (ckpt_path; weights only, so from step 0)", path)
    return None


def forget(directory: Path) -> None:
    """Delete a finished run's resume folder (its checkpoint is only for rerunning an interrupted run)."""
    if is_global_zero():
        shutil.rmtree(directory, ignore_errors=True)
