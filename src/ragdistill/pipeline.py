"""The experiment, top-down: data → candidates → teacher → student fit → index → evaluate → report.

``train(cfg)`` and ``evaluate(cfg)`` only build objects from the config and connect them; each stage's
logic lives in its own module. Tests call these functions directly with a composed config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger

from ragdistill.candidates.base import CandidateGenerator
from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.config_check import check_run
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.evaluation.retrieval import check_ks_fit_corpus, evaluate_retriever, needs_bm25, set_names
from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.loggers.dashboards import build_loggers, log_run_outputs
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.export import export_sentence_transformers
from ragdistill.runtime.determinism import skip_nan_fill
from ragdistill.runtime.distributed import is_global_zero, start_processes
from ragdistill.runtime.precision import resolve_precision
from ragdistill.runtime.resume import ResumeCheckpoint, checkpoint_to_resume, forget, resume_key, start_from
from ragdistill.runtime.run_info import start_run
from ragdistill.runtime.timing import StageTimer
from ragdistill.teachers.base import DerivedTeacher, Teacher
from ragdistill.teachers.cache import (
    DEFAULT_SAVE_EVERY_PASSAGES,
    DEFAULT_SHARD_PASSAGES,
    SignalCache,
    score_with_cache,
)
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.errors import ConfigError

logger = logging.getLogger(__name__)


def _build(cfg: DictConfig, what: str, **kwargs: Any) -> Any:
    logger.info("Instantiating %s <%s>", what, cfg[what].get("_target_"))
    return instantiate(cfg[what], **kwargs)


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (loggers, callbacks); ``None`` entries are skipped."""
    if not cfg:
        return []
    return [instantiate(entry) for entry in cfg.values() if entry is not None and "_target_" in entry]


def _bm25_baseline(
    cfg: DictConfig, data: RetrievalData, first_stage: CandidateGenerator | None = None
) -> BM25Candidates | None:
    """Return the BM25 run that evaluation compares with and fuses in, or None when neither is asked for.

    Reuses the first stage when it is BM25; otherwise fits a new one, from ``cfg.candidates`` when that is
    BM25 (keeping its k1/b/stopwords), else with BM25 defaults.
    """
    if not needs_bm25(cfg.evaluation):
        return None
    if isinstance(first_stage, BM25Candidates) and first_stage.ids == [p.id for p in data.corpus]:
        return first_stage  # unless the teacher grew the corpus since (G2R's index_generated)
    built = instantiate(cfg.candidates) if "candidates" in cfg else None
    bm25 = built if isinstance(built, BM25Candidates) else BM25Candidates()
    return bm25.fit(data.corpus)


def _cached_scores(
    cfg: DictConfig,
    teacher_cfg: DictConfig,
    teacher: Teacher,
    data: RetrievalData,
    candidates: dict[str, RankedList],
    questions: list[Question],
) -> tuple[list[TeacherSignal], dict[str, float]]:
    """Score ``questions`` with ``teacher`` (configured by ``teacher_cfg``), reusing cached shards.

    The cache key is the resolved teacher config (which holds its LM's config) plus the fingerprint of the
    teacher's models; each shard is further addressed by the questions, candidates and passage texts it
    holds, so data and first-stage changes miss on their own.
    """
    cache = None
    if cfg.get("cache_teacher", True):
        parts = {"teacher": OmegaConf.to_container(teacher_cfg, resolve=True), **teacher.cache_identity()}
        cache = SignalCache.from_parts(Path(cfg.paths.cache_dir), parts)
    shard_passages = int(cfg.get("teacher_shard_passages", DEFAULT_SHARD_PASSAGES))
    save_every = cfg.get("teacher_save_every_passages", DEFAULT_SAVE_EVERY_PASSAGES)
    signals, stats = score_with_cache(
        teacher, questions, candidates, data, cache, shard_passages=shard_passages, save_every=save_every
    )
    return signals, stats.metrics() | teacher.metrics()


def _score_teacher(
    cfg: DictConfig, teacher: Teacher, data: RetrievalData, candidates: dict[str, RankedList], loss: Any
) -> tuple[list[TeacherSignal], dict[str, float]]:
    """Score the training questions, reusing cached signals; return them with the teacher's figures.

    A :class:`DerivedTeacher` (AAR) caches its source's scores under the source's own config
    (``cfg.teacher.source``), so it shares them with a run of that teacher alone; deriving caches its own
    work (G2R's units, the intermediate ranker).
    ``loss`` says whether the student reads the teacher's scores, which some quality warnings presume.
    """
    if isinstance(teacher, DerivedTeacher):
        asked = teacher.source_questions(data.train)
        source_signals, metrics = _cached_scores(cfg, cfg.teacher.source, teacher.source, data, candidates, asked)
        derived = teacher.derive(source_signals, data.train, candidates, data)
        derived.register_passages(data)  # e.g. G2R's generated units, readable by id for training
        signals = derived.signals
        metrics |= teacher.metrics()  # the derived teacher's own figures (e.g. the ranker's), after deriving
    else:
        signals, metrics = _cached_scores(cfg, cfg.teacher, teacher, data, candidates, data.train)
    reads_scores = _group_needs(loss)["reads_teacher_scores"]
    metrics |= teacher_quality(signals, data.train, data, candidates, reads_scores=reads_scores)
    metrics |= teacher.quality(signals)  # the teacher's own indicators, e.g. attention's lifts
    logger.info(
        "Teacher quality: top-1 is gold for %.1f%% of questions whose pool holds it",
        100 * metrics.get("teacher/top1_gold", float("nan")),
    )
    return signals, metrics


def check_teacher_fits_loss(teacher: Teacher, loss: Any) -> None:
    """Refuse a teacher and a loss that cannot train together, before any candidate or LM work.

    A loss that reads positives (InfoNCE, multi-positive InfoNCE) has nothing to learn from a teacher that
    only grades candidates (an LM's likelihoods or attention, an LLM's order). Leaving ``loss=`` out picks
    the teacher's own loss (each teacher's config names it).

    Raises:
        ConfigError: The pair cannot train, in one line naming both and what to use instead.
    """
    if getattr(loss, "needs_positives", False) and not teacher.marks_positives:
        raise ConfigError(
            f"loss <{type(loss).__name__}> trains on positives, but teacher <{type(teacher).__name__}> marks none "
            "(it grades candidates): leave loss= out for the teacher's own loss, or pick one that learns scores "
            "(kl, listnet, listmle, ranknet, margin_mse)"
        )


def _group_needs(loss: Any) -> dict[str, bool]:
    """What the loss needs of each question's group (the data module's defaults follow it)."""
    return {
        "reads_teacher_scores": bool(getattr(loss, "reads_teacher_scores", False)),
        "single_positive": bool(getattr(loss, "single_positive", False)),
    }


def _reader(cfg: DictConfig) -> Any:
    """The RAG reader of ``reader=lm``, or None (``reader=none``: retrieval metrics only)."""
    return _build(cfg, "reader") if cfg.get("reader") else None


def _finish(metrics: dict[str, float], loggers: list[Logger], run_dir: Path, step: int) -> dict[str, float]:
    if is_global_zero():  # under DDP every rank holds the same metrics; one writes them
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
        logger.info("Wrote <%s>", run_dir / "metrics.json")
    log_run_outputs(loggers, run_dir, metrics)
    for lg in loggers:
        lg.log_metrics(metrics, step=step)
        lg.finalize("success")
    return metrics


@contextmanager
def _finalize_loggers_on_failure(loggers: list[Logger]) -> Iterator[None]:
    """Close every logger as ``failed`` if the body raises, so their files are complete; then re-raise."""
    try:
        yield
    except BaseException:
        for lg in loggers:
            lg.finalize("failed")
        raise


def _held_out_questions(data: RetrievalData, val_signals: Sequence[TeacherSignal]) -> list[Question]:
    """The training questions the data module held out from fitting, for the ``val/...`` retrieval metrics."""
    held_out = {signal.qid for signal in val_signals}
    return [question for question in data.train if question.id in held_out]


def _start_resuming(resume: ResumeCheckpoint | None, directory: Path) -> Path | None:
    """Point ``resume`` (None: resuming is off) at ``directory``; return a checkpoint an interrupted run left there."""
    if resume is None:
        return None
    resume.use(directory)
    checkpoint = checkpoint_to_resume(directory)
    if checkpoint is not None:
        logger.info("Resuming training from <%s> (an earlier run of this command was interrupted)", checkpoint)
    return checkpoint


def _log_every(trainer: pl.Trainer, datamodule: Any) -> None:
    """Log at least once an epoch: ``trainer.log_every_n_steps``, capped at the batches of an epoch (each rank's).

    A 3-batch fixture run with the default 10 logged no training loss and got Lightning's warning about it
    on every run; a real run keeps its setting.
    """
    batches = max(1, len(datamodule.train_dataloader()) // max(1, trainer.world_size))
    asked = int(getattr(trainer, "log_every_n_steps", 1))  # set in Trainer.__init__, not in its stubs
    trainer.log_every_n_steps = max(1, min(asked, batches))  # type: ignore[attr-defined]


def _start(cfg: DictConfig) -> tuple[Path, StageTimer, RetrievalData, dict[str, RetrievalData]]:
    """What every run does first: check the config and the dirs it writes, seed, record the run, load the data.

    The extra evaluation sets (``evaluation.sets``) load here too, so a malformed file among them fails the
    run before any training rather than after it.
    """
    check_run(cfg)
    run_dir = start_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    timer = StageTimer()
    evaluating = cfg.get("evaluate", True)
    with timer("data"):
        data: RetrievalData = _build(cfg, "data")
        sets = _evaluation_sets(cfg) if evaluating else {}
    logger.info("Data: %s", data.summary())
    if evaluating and not data.eval:
        raise ConfigError(f"data {data.name!r} has no evaluation questions; give some or set evaluate=false")
    if evaluating:
        check_ks_fit_corpus(cfg.evaluation.ks, len(data.corpus), f"data {data.name!r}")
    return run_dir, timer, data, sets


def _evaluation_sets(cfg: DictConfig) -> dict[str, RetrievalData]:
    """Load each extra evaluation set of ``evaluation.sets`` (name -> a data config), checking it has questions."""
    sets: dict[str, RetrievalData] = {}
    for name in set_names(cfg.evaluation):
        logger.info("Instantiating evaluation set %s <%s>", name, cfg.evaluation.sets[name].get("_target_"))
        sets[name] = instantiate(cfg.evaluation.sets[name])
        logger.info("Evaluation set %s: %s", name, sets[name].summary())
        if not sets[name].eval:
            raise ConfigError(f"evaluation.sets.{name} ({sets[name].name!r}) has no evaluation questions")
        check_ks_fit_corpus(cfg.evaluation.ks, len(sets[name].corpus), f"evaluation.sets.{name}")
    return sets


def _evaluate(
    cfg: DictConfig,
    retriever: BiEncoderModule,
    data: RetrievalData,
    sets: dict[str, RetrievalData],
    run_dir: Path,
    first_stage: CandidateGenerator | None = None,
    validation: Sequence[Question] = (),
) -> dict[str, float]:
    """Evaluate on the run's data (``test/...``, with the reader) and on each extra set (``<name>/...``)."""
    bm25 = _bm25_baseline(cfg, data, first_stage)
    index = _build(cfg, "index")
    metrics = evaluate_retriever(retriever, data, index, cfg.evaluation, run_dir, bm25, _reader(cfg), validation)
    for name, extra in sets.items():
        index = _build(cfg, "index")
        metrics |= evaluate_retriever(
            retriever, extra, index, cfg.evaluation, run_dir, _bm25_baseline(cfg, extra), prefix=name
        )
    return metrics


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Run one experiment; return its metrics and the objects it built (for tests and notebooks)."""
    run_dir, timer, data, sets = _start(cfg)
    if not data.train:
        raise ConfigError(f"data {data.name!r} has no training questions (data.train_path / data.n_train?)")

    retriever: BiEncoderModule = _build(cfg, "retriever", loss=instantiate(cfg.loss))
    teacher: Teacher = _build(cfg, "teacher")
    check_teacher_fits_loss(teacher, retriever.loss)
    first_stage: CandidateGenerator = _build(cfg, "candidates")
    with timer("candidates"):
        first_stage.fit(data.corpus, retriever=retriever)
        candidates = first_stage.retrieve(data.train)

    loggers: list[Logger] = build_loggers(cfg)
    resume = ResumeCheckpoint(cfg.resume_every_n_steps) if cfg.get("resume_every_n_steps") else None
    callbacks = (
        instantiate_group(cfg.get("callbacks")) + teacher.training_callbacks(data) + ([resume] if resume else [])
    )
    precision = resolve_precision(cfg.trainer.get("precision"), cfg.trainer.get("accelerator", "auto"))
    trainer: pl.Trainer = _build(
        cfg,
        "trainer",
        logger=loggers or False,
        callbacks=callbacks,
        precision=precision,
        # Lightning would add its own checkpoint (weights and optimizer) without one in callbacks: a second
        # and third copy of the weights beside retriever/
        enable_checkpointing=any(isinstance(callback, ModelCheckpoint) for callback in callbacks),
    )
    skip_nan_fill()  # trainer.deterministic stays; torch's NaN fill of new tensors was the largest cost in it
    if teacher.scores_on_every_rank:  # trainer=ddp: the teacher's LM passes are split over the ranks too
        start_processes(trainer)
    with _finalize_loggers_on_failure(loggers):
        with timer("teacher"):
            signals, teacher_metrics = _score_teacher(cfg, teacher, data, candidates, retriever.loss)
        # the teacher may have drawn random numbers (scoring) or none (cache hit): reseed, so that training
        # is the same whichever it did, and a resumed run ends with an uninterrupted run's metrics
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = _build(cfg, "datamodule")(signals=signals, data=data, **_group_needs(retriever.loss))
        _log_every(trainer, datamodule)
        metrics: dict[str, float] = {"train/questions": float(len(datamodule.train_signals)), **teacher_metrics}
        resume_dir = Path(cfg.paths.cache_dir) / "resume" / resume_key(cfg, signals)
        checkpoint = _start_resuming(resume, resume_dir)
        given = start_from(retriever, cfg.get("ckpt_path")) if checkpoint is None else None
        with timer("fit"):
            trainer.fit(retriever, datamodule=datamodule, ckpt_path=checkpoint or given, weights_only=True)
        export_sentence_transformers(retriever, run_dir / "retriever")
        if cfg.get("evaluate", True):
            with timer("evaluate"):
                held_out = _held_out_questions(data, datamodule.val_signals)
                metrics |= _evaluate(cfg, retriever, data, sets, run_dir, first_stage, held_out)
    metrics |= timer.metrics() | {"runtime/resumed": float(checkpoint is not None)}
    objects = {"data": data, "retriever": retriever, "signals": signals, "trainer": trainer}
    finished = _finish(metrics, loggers, run_dir, trainer.global_step)
    forget(resume_dir)  # the run is complete: its resume checkpoint would only ever skip training
    return finished, objects


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Evaluate ``cfg.retriever`` (any folder, hub id or packaged model) on ``cfg.data`` without training."""
    run_dir, timer, data, sets = _start(cfg)
    retriever: BiEncoderModule = _build(cfg, "retriever")
    loggers: list[Logger] = build_loggers(cfg)
    with _finalize_loggers_on_failure(loggers), timer("evaluate"):
        metrics = _evaluate(cfg, retriever, data, sets, run_dir)
    metrics |= timer.metrics()
    return _finish(metrics, loggers, run_dir, 0), {"data": data, "retriever": retriever}
