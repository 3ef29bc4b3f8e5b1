"""PEAR: find the attention heads that suppress copying from the context and turn them down (arXiv 2409.19745).

1. Proxy task (:mod:`~ragdistill.reader.pear_copy`): random token sequences repeated.
2. Head scoring (:mod:`~ragdistill.reader.pear_scoring`): mean-ablate each of the L×H heads in turn. By
   default (the paper's metric) the score is the relative change of the target token's logit at the final
   position, averaged over several sequence lengths; > 0 (ablating the head raises it) marks a suppression
   head. This project's first metric, the fall of the mean copy loss over the second half at one length,
   stays available (``head_metric="copy_loss"``).
3. Re-weighting: one scalar per selected head (top-N by score), initialised at 1, optimised on the copy
   loss with the LM frozen.
4. Folding (:func:`~ragdistill.reader.pear_heads.fold_coefficients`): multiply the weights that read each
   head's slice of the attention output projection by its scalar, so the reader runs the unmodified
   architecture at unchanged cost.

:func:`run_pear` ties 1–3 together and caches the result as a checksummed folder
``<cache_dir>/pear/<key>/`` (``coefficients.json`` + ``manifest.json``), keyed by the LM's fingerprint and the
settings, reused when intact and rebuilt when damaged. :func:`pear_task` is the ``ragdistill-pear`` run.

References:
    Tan et al., "PEAR: Position-Embedding-Agnostic Attention Re-weighting Enhances Retrieval-Augmented
    Generation with Zero Inference Overhead", WWW 2025, arXiv:2409.19745.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from ragdistill.models.lm import LanguageModel
from ragdistill.reader.artifact import intact_folder, save_folder
from ragdistill.reader.pear_copy import CopyBatch, copy_scores, copy_task
from ragdistill.reader.pear_heads import HeadId, fold_coefficients, head_layout, scaled_heads
from ragdistill.reader.pear_scoring import (
    HEAD_METRICS,
    SCORE_PATHS,
    HeadMetric,
    HeadScore,
    ScorePaths,
    learn_coefficients,
    score_heads,
    select_heads,
)
from ragdistill.runtime.run_info import start_run
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.cache_key import config_key
from ragdistill.utils.settings import dataclass_from_mapping

logger = logging.getLogger(__name__)

PEAR_FORMAT_VERSION = 2
"""Bump when the procedure or ``coefficients.json`` changes meaning: older cached folders then miss."""

COEFFICIENTS_FILE = "coefficients.json"


@dataclass(frozen=True)
class PearSettings:
    """What determines PEAR's coefficients (all part of the cache key).

    Attributes:
        n_heads: Suppressing heads re-weighted at most (fewer when fewer heads have a score > 0).
        sequences: Copy-task sequences the coefficients learn on (seed); as many held-out sequences
            (seed + 1) measure the accuracy before and after.
        length: Tokens per half of those sequences.
        steps: Adam steps on the coefficients (full batch).
        lr: Adam's learning rate.
        seed: Seed of the copy-task sequences.
        head_metric: ``final_logit`` (the paper's: relative change of the final target logit) or
            ``copy_loss`` (this project's first metric, behind the published ``benchmarks/results/pear*.md``).
        score_lengths: Tokens per half of the scoring batches, one batch per length, scores averaged over them
            (the authors' code: 10, 15, 25, 50); ``None`` scores on the learning sequences (``sequences`` ×
            ``length``, one length), as this project did first.
        score_sequences: Sequences per scoring length (seeds ``seed + 2``, ``seed + 3``, …).
        score_paths: For ``final_logit``: ``direct`` (every other head frozen at its clean output, the
            authors' path patching) or ``total`` (later heads react).
    """

    n_heads: int = 8
    sequences: int = 16
    length: int = 24
    steps: int = 30
    lr: float = 0.05
    seed: int = 0
    head_metric: HeadMetric = "final_logit"
    score_lengths: tuple[int, ...] | None = (10, 15, 25, 50)
    score_sequences: int = 64
    score_paths: ScorePaths = "direct"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PearSettings:
        """Settings from a config mapping; an unknown name is a ``ValueError`` naming the known ones."""
        return dataclass_from_mapping(cls, values, "PEAR settings")

    def __post_init__(self) -> None:
        if self.score_lengths is not None:  # a list from a config or coefficients.json: hashable and comparable
            object.__setattr__(self, "score_lengths", tuple(int(n) for n in self.score_lengths))
        for name in ("n_heads", "sequences", "steps", "score_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"pear {name} must be >= 1, got {getattr(self, name)}")
        if self.length < 2 or self.lr <= 0:
            raise ValueError(f"pear length must be >= 2 and lr > 0, got {self.length} and {self.lr}")
        if self.score_lengths is not None and (not self.score_lengths or min(self.score_lengths) < 2):
            raise ValueError(f"pear score_lengths must be null or lengths >= 2, got {list(self.score_lengths)}")
        if self.head_metric not in HEAD_METRICS or self.score_paths not in SCORE_PATHS:
            raise ValueError(
                f"pear head_metric must be one of {list(HEAD_METRICS)} and score_paths one of {list(SCORE_PATHS)}, "
                f"got {self.head_metric!r} and {self.score_paths!r}"
            )

    def scoring_batches(self, vocab: Any, train: CopyBatch) -> list[CopyBatch]:
        """The copy batches heads are scored on: one per ``score_lengths`` entry, or ``[train]`` when ``None``."""
        if self.score_lengths is None:
            return [train]
        return [
            copy_task(vocab, self.score_sequences, length, self.seed + 2 + i)
            for i, length in enumerate(self.score_lengths)
        ]


@dataclass
class PearResult:
    """PEAR's coefficients and what made them; ``coefficients.json`` holds all but the last three fields.

    Attributes:
        heads: The selected heads, most suppressing first, each with its learned coefficient (``value``) and
            its ``score``.
        scores: Every head's score (``settings.head_metric``; > 0: suppressing), descending.
        settings: The settings that made them.
        lm: The LM's name and fingerprint.
        before: Held-out copy ``loss`` and ``accuracy`` of the LM as it is.
        after: The same with the coefficients applied.
        key: The cache key (``None`` without a cache).
        directory: The cached folder (``None`` without a cache).
        reused: Whether it came from the cache.
    """

    heads: list[dict[str, float]]
    scores: list[HeadScore]
    settings: PearSettings
    lm: dict[str, str]
    before: dict[str, float]
    after: dict[str, float]
    key: str | None = None
    directory: Path | None = None
    reused: bool = field(default=False, compare=False)

    @property
    def coefficients(self) -> dict[HeadId, float]:
        """``(layer, head)`` → learned scalar, for :func:`~ragdistill.reader.pear_heads.fold_coefficients`."""
        return {(int(h["layer"]), int(h["head"])): float(h["value"]) for h in self.heads}

    def metrics(self) -> dict[str, float]:
        """``pear/*`` figures for metrics.json."""
        values = [h["value"] for h in self.heads] or [float("nan")]
        return {
            "pear/heads": float(len(self.heads)),
            "pear/coefficient_min": min(values),
            "pear/coefficient_max": max(values),
            **{f"pear/{name}_before": v for name, v in self.before.items()},
            **{f"pear/{name}_after": v for name, v in self.after.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """The content of ``coefficients.json``."""
        return {
            "format_version": PEAR_FORMAT_VERSION,
            "heads": self.heads,
            "settings": dataclasses.asdict(self.settings),
            "lm": self.lm,
            "copy_task": {"before": self.before, "after": self.after},
            "head_scores": [[s.layer, s.head, s.score] for s in self.scores],
        }

    @classmethod
    def from_json(cls, record: dict[str, Any], key: str | None = None, directory: Path | None = None) -> PearResult:
        """Read :meth:`to_json`'s output back."""
        return cls(
            heads=record["heads"],
            scores=[HeadScore(int(layer), int(head), float(score)) for layer, head, score in record["head_scores"]],
            settings=PearSettings(**record["settings"]),
            lm=record["lm"],
            before=record["copy_task"]["before"],
            after=record["copy_task"]["after"],
            key=key,
            directory=directory,
            reused=True,
        )


def apply_pear(lm: LanguageModel | nn.Module, result: PearResult) -> None:
    """Fold ``result``'s coefficients into the LM's weights in place (no hooks; the architecture is unchanged).

    A :class:`LanguageModel` records the edit, so its fingerprint (and every cache keyed by it, e.g. a
    teacher's scores) tells the re-weighted LM from the original.
    """
    if isinstance(lm, LanguageModel):
        fold_coefficients(lm.model, result.coefficients)
        lm.record_weight_edit(f"pear:{result.key or config_key(result.to_json())}")
    else:
        fold_coefficients(lm, result.coefficients)


def pear_key(lm: LanguageModel, settings: PearSettings) -> str:
    """The cache key: the LM's fingerprint, the settings and :data:`PEAR_FORMAT_VERSION`."""
    return config_key({"pear": PEAR_FORMAT_VERSION, "lm": lm.fingerprint(), "settings": settings})


def run_pear(
    lm: LanguageModel | tuple[nn.Module, Any],
    settings: PearSettings | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> PearResult:
    """Score the heads, pick the suppressing ones, learn their coefficients; cached under ``cache_dir``.

    The LM is left as it was (hooks removed, nothing folded): apply the result with :func:`apply_pear`.

    Args:
        lm: The reader LM, or ``(model, tokenizer)`` (wrapped with ``LanguageModel.from_objects``).
        settings: :class:`PearSettings` (defaults when ``None``).
        cache_dir: Where ``pear/<key>/`` is kept (``None``: always compute, save nothing).
        progress: Show a progress bar over head scoring.

    Returns:
        The coefficients with what made them and the held-out copy-task figures before and after.
    """
    if not isinstance(lm, LanguageModel):
        lm = LanguageModel.from_objects(*lm)
    settings = settings or PearSettings()
    if cache_dir is None:
        return _compute(lm, settings, progress)
    key = pear_key(lm, settings)
    directory = Path(cache_dir) / "pear" / key
    if intact_folder(directory, [COEFFICIENTS_FILE], "PEAR folder"):
        logger.info("Reusing PEAR coefficients <key=%s> (%s)", key, directory)
        return PearResult.from_json(json.loads((directory / COEFFICIENTS_FILE).read_text()), key, directory)
    result = _compute(lm, settings, progress)
    result.key, result.directory = key, directory
    _save(result, directory)
    return result


def _compute(lm: LanguageModel, settings: PearSettings, progress: bool) -> PearResult:
    model = lm.model
    layout = head_layout(model)
    train = copy_task(lm.tokenizer, settings.sequences, settings.length, settings.seed)
    held_out = copy_task(lm.tokenizer, settings.sequences, settings.length, settings.seed + 1)
    scoring = settings.scoring_batches(lm.tokenizer, train)
    logger.info(
        "PEAR on <%s>: %d layers × %d heads scored by %s at half-lengths %s; coefficients on %d sequences of 2×%d",
        lm.name,
        layout.num_layers,
        layout.num_heads,
        settings.head_metric,
        [batch.length for batch in scoring],
        settings.sequences,
        settings.length,
    )
    before = copy_scores(model, held_out)
    scores = score_heads(model, scoring, layout, progress, settings.head_metric, settings.score_paths)
    picked = select_heads(scores, settings.n_heads)
    values = learn_coefficients(model, train, [(s.layer, s.head) for s in picked], settings.steps, settings.lr, layout)
    with scaled_heads(layout, values):
        after = copy_scores(model, held_out)
    heads = [{"layer": s.layer, "head": s.head, "value": values[(s.layer, s.head)], "score": s.score} for s in picked]
    logger.info(
        "PEAR heads %s; held-out copy accuracy %.3f -> %.3f", [(s.layer, s.head) for s in picked], before[1], after[1]
    )
    return PearResult(
        heads=heads,
        scores=scores,
        settings=settings,
        lm={"name": lm.name, "fingerprint": lm.fingerprint()},
        before={"loss": before[0], "accuracy": before[1]},
        after={"loss": after[0], "accuracy": after[1]},
    )


def _save(result: PearResult, directory: Path) -> None:
    """Write ``coefficients.json`` and the manifest in a staging folder, then rename it into place."""
    text = json.dumps(result.to_json(), indent=2)
    save_folder(
        directory,
        lambda folder: atomic_write_text(folder / COEFFICIENTS_FILE, text),
        [COEFFICIENTS_FILE],
        "PEAR folder",
        settings=dataclasses.asdict(result.settings),
        lm=result.lm,
    )
    logger.info("Saved PEAR coefficients <key=%s> to <%s>", result.key, directory)


def pear_task(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """``ragdistill-pear``: run PEAR on ``cfg.lm`` and write ``pear.json`` and ``metrics.json`` to the run dir.

    Args:
        cfg: The composed ``conf/pear.yaml``.

    Returns:
        The ``pear/*`` metrics and ``{"lm": ..., "result": ...}``.
    """
    from hydra.utils import instantiate

    settings = PearSettings.from_mapping({f.name: cfg[f.name] for f in dataclasses.fields(PearSettings)})
    run_dir = start_run(cfg)
    lm: LanguageModel = instantiate(cfg.lm)
    result = run_pear(lm, settings, cache_dir=cfg.cache_dir, progress=cfg.get("progress", True))
    atomic_write_text(run_dir / "pear.json", json.dumps(result.to_json(), indent=2))
    metrics = result.metrics() | {"pear/reused": float(result.reused)}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    logger.info("Wrote <%s> and <%s>", run_dir / "pear.json", run_dir / "metrics.json")
    return metrics, {"lm": lm, "result": result}
