"""One Lightning ``predict`` pass outside training: corpus encoding and LM teacher scoring both run through here.

On one process it is a one-device ``Trainer.predict``. When a process group runs (a ``trainer=ddp`` run
once its processes started, ``torchrun``, SLURM), every rank calls it with the same loader; the loader's
batches are dealt out to the ranks whole, each rank predicts its share on its own device under Lightning's
DDP strategy, and every rank gets all outputs back in loader order.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import signal
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ProgressBar
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import move_data_to_device
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, Sampler

from ragdistill.runtime.distributed import (
    RunningGroup,
    backend,
    gather_in_order,
    local_rank,
    local_world_size,
    same_on_every_rank,
    shard_positions,
    world,
)
from ragdistill.runtime.precision import resolve_precision

logger = logging.getLogger(__name__)


def run_predict(
    module: pl.LightningModule,
    loader: DataLoader,
    accelerator: str,
    precision: str | None,
    callbacks: Sequence[Callback],
    *,
    distributed: bool = True,
) -> list[Any]:
    """Return ``module``'s ``predict_step`` outputs over ``loader``, one per batch in loader order; mode kept.

    Lightning picks the device and the precision (e.g. ``bf16-mixed`` autocast), so the same call runs on a
    CPU or a GPU. No logger, checkpoints or model summary: this is inference inside a larger run. Progress is
    shown by the ``callbacks`` (Lightning's own bar is used only when one of them is a progress bar).

    Across processes (``distributed`` and a process group running), every rank must call this with the same
    loader (the same batches, in the same order). Batch ``i`` goes to rank ``i mod world_size``, whole, so
    length-bucketed batches stay as built and each output is what one process would compute; a rank short of
    batches repeats the last one, and the repeat is dropped. Lightning's distributed sampler is off: it would
    deal out items, not batches. Every rank returns the same complete list.

    Args:
        module: What to run; its ``predict_step`` outputs are returned.
        loader: The batches; any sampler or batch sampler, ``batch_size=None`` loaders included.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision, e.g. ``bf16-mixed`` or ``32-true`` (bfloat16 falls back to float32 on
            a CPU without native bfloat16, see :func:`~ragdistill.runtime.precision.resolve_precision`).
        callbacks: Callbacks for the predict run (e.g. a progress bar; shown on rank 0 only).
        distributed: Split the batches over the running process group, if there is one; ``False`` predicts
            every batch in this process alone (nothing to wait for from the other ranks).

    Raises:
        RuntimeError: If the ranks' loaders differ in their batches, or an output went missing.
    """
    precision = resolve_precision(precision, accelerator)
    rank, world_size = world()
    if not distributed or world_size == 1:
        return _predict(module, loader, callbacks, accelerator=accelerator, devices=1, precision=precision)
    plan = _batch_plan(loader)
    if not same_on_every_rank(_digest(plan)):
        raise RuntimeError(f"rank {rank}: the ranks' predict loaders hold different batches; build them identically")
    if not plan:
        return []
    positions = shard_positions(len(plan), rank, world_size)
    local = local_world_size()
    strategy = DDPStrategy(cluster_environment=RunningGroup(local_rank(), local), process_group_backend=backend())
    outputs = _predict(
        module,
        _with_batches(loader, [plan[p] for p in positions]),
        callbacks,
        accelerator=accelerator,
        devices=local,
        num_nodes=world_size // local,
        strategy=strategy,
        precision=precision,
        use_distributed_sampler=False,  # the batches are dealt out above, whole
    )
    logger.info("Rank %d predicted %d of %d batches; gathering", rank, len(positions), len(plan))
    return gather_in_order(list(zip(positions, move_data_to_device(outputs, "cpu"), strict=True)), len(plan))


TERMINATED = 128 + signal.SIGTERM
"""Exit status of a run stopped by SIGTERM (a ``kill``, a scheduler's preemption or time limit): 143."""


class StopOnSigterm(Callback):
    """End a predict run after the batch in which SIGTERM came, with a terminated process's exit status (143).

    Lightning replaces the SIGTERM handler during ``predict`` with one that only sets ``received_sigterm``,
    which its fit and validation loops check and its predict loop does not: a ``kill``, a scheduler's
    preemption or a timeout during hours of teacher scoring was swallowed and the run went on. Raising here
    stops it between batches; what finished before (teacher shards, answer chunks) is already on disk.
    """

    def on_predict_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        """Raise :class:`SIGTERMException` (exit status 143) once Lightning has recorded a SIGTERM."""
        if trainer.received_sigterm:
            logger.warning("SIGTERM received: stopping after this batch (finished work is kept)")
            raise SIGTERMException(TERMINATED)


def _predict(
    module: pl.LightningModule, loader: DataLoader, callbacks: Sequence[Callback], **trainer_args: Any
) -> list[Any]:
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        callbacks=[*callbacks, StopOnSigterm()],
        **trainer_args,
    )
    was_training = module.training
    try:
        with warnings.catch_warnings():  # batch samplers here yield every index once (nothing for drop_last to do)
            warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
            return list(trainer.predict(module, loader) or [])
    finally:
        module.train(was_training)


def _digest(plan: list[Any]) -> str:
    """A short fingerprint of a batch plan, so ranks compare plans without sending them."""
    return hashlib.blake2b(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL), digest_size=16).hexdigest()


def _batch_plan(loader: DataLoader) -> list[Any]:
    """What each of the loader's batches reads: its index list, or its one index when ``batch_size=None``."""
    if loader.batch_sampler is not None:
        return [list(batch) for batch in loader.batch_sampler]
    return list(loader.sampler)


class _Listed(Sampler[Any]):
    """Fixed indices or index batches (Lightning wraps a sampler object, not a plain list)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _with_batches(loader: DataLoader, batches: list[Any]) -> DataLoader:
    """``loader`` reading only ``batches`` (entries of :func:`_batch_plan`), in that order."""
    common: dict[str, Any] = {
        "collate_fn": loader.collate_fn,
        "num_workers": loader.num_workers,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
    }
    if loader.batch_sampler is None:  # batch_size=None: each dataset item is a batch already
        return DataLoader(loader.dataset, batch_size=None, sampler=_Listed(batches), **common)
    return DataLoader(loader.dataset, batch_sampler=_Listed(batches), **common)
