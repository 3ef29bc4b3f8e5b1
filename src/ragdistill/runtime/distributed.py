"""Run a stage on every process of a distributed run: who writes, who predicts which batches, results in order.

Processes are started by Lightning, never here: ``trainer=ddp`` starts the other ranks at the first ``fit``
(by running the same command again with ``LOCAL_RANK`` set), or at the start of the run when the pipeline
calls :func:`start_processes`; ``torchrun`` and SLURM start them before Python does. Once the process group
is up, every rank runs every stage; ``run_predict`` splits its batches over the ranks with
:func:`shard_positions` and gives every rank all outputs back with :func:`gather_in_order`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.plugins.environments import ClusterEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only

logger = logging.getLogger(__name__)

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the running process group; ``(0, 1)`` when none runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend() -> str:
    """The running process group's backend (``gloo``, ``nccl``)."""
    return str(dist.get_backend())


def is_global_zero() -> bool:
    """Whether this process writes the run's files: global rank 0.

    Before a process group runs, Lightning's reading of the environment decides (``RANK``, ``LOCAL_RANK``,
    ``SLURM_PROCID``), so a rank Lightning started for ``fit`` knows it is not rank 0 from its first line.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return getattr(rank_zero_only, "rank", 0) == 0


def local_rank() -> int:
    """This process's rank on its node: ``LOCAL_RANK`` (Lightning, torchrun), ``SLURM_LOCALID``, else its rank."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if (value := os.environ.get(name)) is not None:
            return int(value)
    return world()[0]


def local_world_size() -> int:
    """Processes per node of the running group (a collective: every rank must call it).

    ``LOCAL_WORLD_SIZE`` where the launcher sets it (torchrun), else one more than the largest local rank.

    Raises:
        RuntimeError: If the nodes run different numbers of processes (Lightning needs the same on each).
    """
    if (value := os.environ.get("LOCAL_WORLD_SIZE")) is not None:
        return int(value)
    ranks: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, local_rank())
    size = max(ranks) + 1
    if dist.get_world_size() % size:
        raise RuntimeError(f"{dist.get_world_size()} processes do not split into nodes of {size} (local ranks {ranks})")
    return size


def start_processes(trainer: pl.Trainer) -> bool:
    """Start ``trainer``'s processes and process group now, so that every stage after this runs on every rank.

    Call it first thing in a run, before any work: with ``strategy=ddp`` Lightning starts the other ranks by
    running the same command again, and they redo everything before this call. Without it they are started
    at ``fit``, so the stages before ``fit`` (candidates, teacher scoring) run on rank 0 alone and are
    repeated by each rank before it joins. ``fit`` later finds the processes and the group already up.

    Does nothing for a one-device trainer, or for a spawning strategy (``ddp_spawn``: the spawned processes
    run ``fit`` only and end with it, so prediction stays in the main process).

    Returns:
        Whether a process group with more than one process is running now.
    """
    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy):
        return world()[1] > 1  # one device (or a group torchrun / SLURM already started)
    if not isinstance(strategy.launcher, _SubprocessScriptLauncher):
        logger.info("Not starting processes early for <%s>: they start at fit", type(strategy).__name__)
        return world()[1] > 1
    strategy.launcher.launch(lambda: None, trainer=trainer)  # the other ranks start this command again
    strategy.setup_environment()  # the process group; fit finds it initialised and keeps it
    rank, size = world()
    logger.info("Started process group: rank %d of %d (%s)", rank, size, backend())
    return size > 1


def shard_positions(total: int, rank: int, world_size: int) -> list[int]:
    """The batch positions ``rank`` predicts: every ``world_size``-th from ``rank``, padded to an equal count.

    Ranks get ``ceil(total / world_size)`` positions each; one that falls short repeats the last batch (the
    shortest under longest-first bucketing), as ``DistributedSampler`` pads. Lightning's DDP refuses a rank
    without batches, and equal counts keep the ranks in step. :func:`merge_in_order` drops the repeats.

    Raises:
        ValueError: If ``world_size < 1``, ``rank`` is outside ``[0, world_size)`` or ``total < 0``.
    """
    if world_size < 1 or not 0 <= rank < world_size or total < 0:
        raise ValueError(f"need total >= 0 and 0 <= rank < world_size, got {total=}, {rank=}, {world_size=}")
    own = list(range(rank, total, world_size))
    if total == 0:
        return own
    per_rank = -(-total // world_size)
    return own + [total - 1] * (per_rank - len(own))


def merge_in_order(per_rank: Sequence[Sequence[tuple[int, T]]], total: int) -> list[T]:
    """Put the ranks' ``(position, output)`` pairs back in loader order: padding repeats dropped, no gap allowed.

    Args:
        per_rank: For each rank, the pairs it computed (any order; a position may appear on several ranks).
        total: Number of batches in the loader; positions must cover ``0 .. total - 1``.

    Returns:
        ``total`` outputs, the one of position ``i`` at index ``i`` (the first rank's, for a repeated position).

    Raises:
        ValueError: If a position is outside ``[0, total)``.
        RuntimeError: If positions are missing (a rank skipped batches: the ranks did not build the same loader).
    """
    merged: dict[int, T] = {}
    for pairs in per_rank:
        for position, output in pairs:
            if not 0 <= position < total:
                raise ValueError(f"batch position {position} outside [0, {total})")
            merged.setdefault(position, output)
    if len(merged) != total:
        missing = sorted(set(range(total)) - merged.keys())
        raise RuntimeError(f"{len(missing)} of {total} batches have no output (positions {missing[:10]}…)")
    return [merged[i] for i in range(total)]


def gather_in_order(pairs: list[tuple[int, T]], total: int) -> list[T]:
    """All-gather every rank's ``(position, output)`` pairs; every rank gets the ``total`` outputs in order.

    Outputs travel pickled (``all_gather_object``): move tensors to the CPU first, so that a rank does not
    unpickle another GPU's tensors. Every rank receives everything: memory grows with the whole output.
    """
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, pairs)
    return merge_in_order(gathered, total)


def same_on_every_rank(value: Any) -> bool:
    """Whether every rank passed an equal ``value`` (a collective: every rank must call it)."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return all(other == gathered[0] for other in gathered)


class RunningGroup(ClusterEnvironment):
    """The process group that is already running, as a Lightning cluster environment.

    Lightning's own environments read ranks from variables its launcher, torchrun or SLURM set, and start
    processes when those are missing; this one reports the running group's ranks and never starts any.

    Args:
        local_rank: This process's rank on its node (its device index on a GPU node).
        local_world_size: Processes per node (Lightning and torchrun number ranks node by node).
    """

    def __init__(self, local_rank: int, local_world_size: int) -> None:
        super().__init__()
        self._local_rank = local_rank
        self._local_world_size = local_world_size

    @property
    def creates_processes_externally(self) -> bool:  # noqa: D102
        return True

    @property
    def main_address(self) -> str:  # noqa: D102
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:  # noqa: D102
        return int(os.environ.get("MASTER_PORT", 0))

    @staticmethod
    def detect() -> bool:  # noqa: D102
        return dist.is_available() and dist.is_initialized()

    def world_size(self) -> int:  # noqa: D102
        return dist.get_world_size()

    def set_world_size(self, size: int) -> None:  # noqa: D102
        pass  # the running group decides

    def global_rank(self) -> int:  # noqa: D102
        return dist.get_rank()

    def set_global_rank(self, rank: int) -> None:  # noqa: D102
        pass  # the running group decides

    def local_rank(self) -> int:  # noqa: D102
        return self._local_rank

    def node_rank(self) -> int:  # noqa: D102
        return dist.get_rank() // self._local_world_size
