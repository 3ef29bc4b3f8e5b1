"""Run an LM over many :class:`LMExample` sequences as a Lightning ``predict``: batched, length-bucketed.

The LM teachers differ only in what they read from one forward pass (target log-probabilities, or
attention over passage tokens); batching, bucketing, padding, precision, device placement and the
progress bar are the same and live here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ragdistill.models.lm_inputs import LMExample
from ragdistill.runtime.precision import resolve_precision
from ragdistill.runtime.predict import run_predict
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)

StepFn = Callable[[Any, dict[str, Any]], Any]
"""``(model, batch) -> per-example results`` (anything indexable by the batch row)."""


@dataclass(frozen=True)
class LMRunSettings:
    """How to batch and where to run an LM scoring pass.

    Attributes:
        max_batch_tokens: Padded tokens per batch (batch size × longest sequence). Batches are formed
            from length-sorted sequences, so padding stays low and long prompts get small batches.
        max_batch_size: Upper bound on sequences per batch.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision; ``bf16-mixed`` runs matmuls in bfloat16 (CPUs with AVX-512 BF16
            and GPUs), ``32-true`` for exact float32.
    """

    max_batch_tokens: int = 8192
    max_batch_size: int = 64
    accelerator: str = "auto"
    precision: str = "bf16-mixed"

    def __post_init__(self) -> None:
        if self.max_batch_tokens < 1 or self.max_batch_size < 1:
            raise ValueError(
                f"max_batch_tokens and max_batch_size must be >= 1, got {self.max_batch_tokens}, {self.max_batch_size}"
            )

    @property
    def effective_precision(self) -> str:
        """The precision the pass really runs in here (``32-true`` for bfloat16 on a CPU without it).

        Caches of what the LM computed key on this, not on :attr:`precision`: float32 fallback scores and
        bfloat16 scores of the same config differ.
        """
        return str(resolve_precision(self.precision, self.accelerator))


def bucket_batches(lengths: list[int], max_tokens: int, max_size: int) -> list[list[int]]:
    """Group indices into batches of similar length whose padded size stays within ``max_tokens``.

    Longest first, so an out-of-memory batch shows up at once rather than at the end. A sequence longer
    than ``max_tokens`` gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]  # sorted: the first is the longest
        if current and (width * (len(current) + 1) > max_tokens or len(current) >= max_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _pad(rows: list[list[int]], fill: int) -> Tensor:
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


def collate_examples(examples: list[LMExample], pad_id: int, seq2seq: bool) -> dict[str, Any]:
    """Right-pad a batch: ``input_ids``/``attention_mask`` ``[b, T]``, targets ``[b, L]`` and their positions.

    Decoder-only: the input is context + target and ``target_positions[b, i]`` is the position whose
    next-token prediction is target token ``i`` (context length − 1 + i). Seq2seq: the input is the
    context (encoder), the target is the decoder's labels and position ``i`` predicts token ``i``.
    """
    if seq2seq:
        inputs = [ex.context_ids for ex in examples]
        positions = [list(range(len(ex.target_ids))) for ex in examples]
    else:
        inputs = [ex.context_ids + ex.target_ids for ex in examples]
        positions = [[len(ex.context_ids) - 1 + i for i in range(len(ex.target_ids))] for ex in examples]
    input_ids = _pad(inputs, pad_id)
    attention_mask = _pad([[1] * len(r) for r in inputs], 0).bool()
    target_mask = _pad([[1] * len(ex.target_ids) for ex in examples], 0).bool()
    return {
        "keys": [ex.key for ex in examples],
        "examples": examples,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "target_ids": _pad([ex.target_ids for ex in examples], pad_id),
        "target_positions": _pad(positions, 0),
        "target_mask": target_mask,
        "n_passages": sum(ex.passages for ex in examples),
    }


class _Batches(Sampler[list[int]]):
    """Precomputed index batches (Lightning wraps a batch sampler object, not a plain list)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Examples(Dataset[LMExample]):
    def __init__(self, examples: list[LMExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> LMExample:
        return self.examples[index]


class LMPredictor(pl.LightningModule):
    """Wrap an LM and a step function so Lightning's ``predict`` runs it (device, precision, strategy)."""

    def __init__(self, model: nn.Module, step: StepFn) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> tuple[list[Any], Any]:
        """Return (the batch's example keys, the step's per-example results)."""
        return batch["keys"], self.step(self.model, batch)


class PassageRate(Callback):
    """A progress bar counting passages read, with passages/s (the figure teachers are compared by)."""

    def __init__(self, description: str, total_passages: int) -> None:
        self.description = description
        self.total = total_passages
        self.done = 0
        self.seconds = 0.0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.progress = progress_bar()
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=self.total, rate="")
        self.started = time.perf_counter()

    def on_predict_batch_end(  # noqa: D102
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self.done += int(batch["n_passages"])
        self.seconds = time.perf_counter() - self.started
        self.progress.update(
            self.task, advance=int(batch["n_passages"]), rate=f"{self.done / self.seconds:,.1f} passages/s"
        )

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        self.progress.stop()

    @property
    def rate(self) -> float:
        """Passages per second over the whole run."""
        return self.done / self.seconds if self.seconds else 0.0


@dataclass
class RunResult:
    """Per-example results keyed like the examples, with the run's throughput."""

    results: dict[Any, Any]
    passages: int
    seconds: float


def run_lm(
    model: nn.Module,
    examples: list[LMExample],
    step: StepFn,
    pad_id: int,
    settings: LMRunSettings,
    description: str = "Teacher scoring",
) -> RunResult:
    """Run ``step`` over ``examples`` in length buckets; return each example's result under its key."""
    if not examples:
        return RunResult({}, 0, 0.0)
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    lengths = [len(ex.context_ids) if seq2seq else ex.length for ex in examples]
    batches = bucket_batches(lengths, settings.max_batch_tokens, settings.max_batch_size)
    loader = DataLoader(
        _Examples(examples),
        batch_sampler=_Batches(batches),
        collate_fn=lambda items: collate_examples(items, pad_id, seq2seq),
    )
    rate = PassageRate(description, sum(ex.passages for ex in examples))
    predictor = LMPredictor(model, step)
    predictor.train(model.training)  # run_predict restores the wrapper's mode, and with it the LM's
    outputs = run_predict(predictor, loader, settings.accelerator, settings.precision, [rate])
    results: dict[Any, Any] = {}
    for keys, values in outputs:
        for i, key in enumerate(keys):
            results[key] = values[i]
    logger.info("%s: %d passages in %.1f s (%.1f passages/s)", description, rate.done, rate.seconds, rate.rate)
    return RunResult(results, rate.done, rate.seconds)
