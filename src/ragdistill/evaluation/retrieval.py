"""The evaluation stage: index the corpus with the retriever, search the eval questions, score, plot."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.ranking import as_run
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.evaluation.fusion import METHODS as FUSION_METHODS
from ragdistill.evaluation.fusion import fuse_runs
from ragdistill.evaluation.metrics import answer_qrels, evaluate_run, gold_qrels
from ragdistill.evaluation.rag import Reader, evaluate_reader
from ragdistill.evaluation.run_files import write_run_files
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encoding_copies
from ragdistill.retriever.search import build_index, search
from ragdistill.runtime.distributed import is_global_zero
from ragdistill.utils.errors import ConfigError
from ragdistill.utils.plots import curves_from_metrics, plot_recall_at_k

logger = logging.getLogger(__name__)

DENSE = "test"
"""Metric prefix of the retriever under test; BM25 and fusion get ``test_bm25`` and ``test_fusion_<method>``."""

VALIDATION = "val"
"""Metric prefix of the retriever on the training questions held out from fitting (``val/gold/recall@5``)."""

RUNS_DIR = "runs"
"""Folder of the run dir holding every evaluated ranking and its qrels in TREC format (``runs/test.run``)."""

RESERVED_PREFIXES = ("test", "val", "train", "teacher", "runtime")
"""Metric prefixes the run already uses: an evaluation set may not be named one (nor start ``test_``/``val_``)."""

_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.-]*(_[A-Za-z0-9.-]+)*")


def needs_bm25(cfg: DictConfig) -> bool:
    """Whether the evaluation settings ask for a BM25 run (as a baseline or to fuse with)."""
    return bool(cfg.bm25_baseline) or _fusion(cfg) is not None


def _fusion(cfg: DictConfig) -> str | None:
    return None if cfg.fusion in (None, "none") else str(cfg.fusion)


def check_evaluation_settings(cfg: DictConfig) -> None:
    """Fail before any work on settings that evaluation, the last stage, would reject or misreport after training.

    A cut-off beyond ``evaluation.depth`` is refused: the search stops at ``depth``, so ``recall@500`` of a
    depth-100 search would report a figure it never measured.

    Raises:
        ConfigError: Naming the ``evaluation.*`` key and what it accepts (a ``ValueError``, as before).
    """
    ks = list(cfg.ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ConfigError(f"evaluation.ks must be a non-empty list of integers >= 1, got {ks}")
    if not isinstance(cfg.depth, int) or isinstance(cfg.depth, bool) or cfg.depth < 1:
        raise ConfigError(f"evaluation.depth must be an integer >= 1, got {cfg.depth!r}")
    if max(ks) > cfg.depth:
        raise ConfigError(
            f"evaluation.ks={ks} goes beyond evaluation.depth={cfg.depth} (the passages searched per question): "
            f"raise evaluation.depth to {max(ks)} or drop the larger cut-offs"
        )
    fusion = _fusion(cfg)
    if fusion is not None and fusion not in FUSION_METHODS:
        raise ConfigError(f"evaluation.fusion must be one of {['none', *FUSION_METHODS]}, got {fusion!r}")
    try:
        encode_settings(cfg)  # raises on a bad encoding switch
    except ValueError as error:
        raise ConfigError(str(error)) from None
    top_k, reader_runs = _reader_settings(cfg)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigError(f"evaluation.reader_top_k must be an integer >= 1, got {top_k!r}")
    check_set_names(cfg)
    known = _run_prefixes(cfg)
    unknown = [p for p in reader_runs if p not in known]
    if unknown:
        raise ConfigError(
            f"evaluation.reader_runs names runs {unknown} this evaluation does not make; choose from {known}"
        )


def check_ks_fit_corpus(ks: Sequence[int], corpus_size: int, where: str) -> None:
    """Refuse cut-offs beyond the corpus: recall@100 of a 50-passage corpus is 1 for any retriever at all.

    Called once the data is loaded, before any teacher or training work.

    Raises:
        ConfigError: Naming the cut-offs, the corpus size and ``where`` (the data or evaluation set).
    """
    beyond = [k for k in ks if k > corpus_size]
    if beyond:
        kept = [k for k in ks if k <= corpus_size]
        raise ConfigError(
            f"evaluation.ks={list(ks)}: {beyond} go beyond the {corpus_size} passages of {where}, where every "
            f"question would count as found; drop them (evaluation.ks={kept or [1]})"
        )


def set_names(cfg: DictConfig) -> list[str]:
    """The names of the extra evaluation sets (``evaluation.sets``), in config order; none for older configs."""
    return [str(name) for name in (cfg.get("sets") or {})]


def check_set_names(cfg: DictConfig) -> None:
    """Refuse an evaluation set whose name would collide with the run's own metric prefixes or is no data config.

    Raises:
        ConfigError: Naming the set and what its name or config must be.
    """
    sets = cfg.get("sets")
    if sets is None:
        return
    if not isinstance(sets, DictConfig):
        raise ConfigError(
            f"evaluation.sets must map a name to a data config (+data@evaluation.sets.<name>=<data>), got {sets!r}"
        )
    for name, node in sets.items():
        name = str(name)
        if name in RESERVED_PREFIXES or name.startswith(("test_", "val_")) or not _SET_NAME.fullmatch(name):
            raise ConfigError(
                f"evaluation.sets.{name}: a set's name becomes its metric prefix ({name}/gold/recall@5), so it must "
                f"be letters, digits, '.', '-' or single '_' starting with a letter, and not one of "
                f"{list(RESERVED_PREFIXES)} or start with test_/val_"
            )
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"evaluation.sets.{name} is not a data config: add one with +data@evaluation.sets.{name}=<data> "
                "(any data= choice: fixture, squad_open, jsonl, beir, dpr, msmarco, ...)"
            )


def metric_problem(name: str, cfg: DictConfig, *, held_out: bool) -> str | None:
    """Why an evaluation with settings ``cfg`` cannot produce metric ``name``, or None if it can (or may).

    Checked before the run, so a sweep does not train every trial to find its objective missing. Names
    outside the evaluation's prefixes (``teacher/...``, ``train/...``) are not judged here.

    Args:
        name: A metric key such as ``val/gold/recall@5`` or ``test_fusion_rrf/answer/mrr@10``.
        cfg: The ``evaluation`` settings.
        held_out: Whether the data module holds training questions out (``datamodule.val_size > 0``),
            which the ``val/...`` figures are measured on.
    """
    from ragdistill.evaluation.metrics import RANK_CUTOFF

    prefix, _, rest = name.partition("/")
    prefixes = _run_prefixes(cfg) + ([VALIDATION] if held_out else [])
    prefixes += [run for set_name in set_names(cfg) for run in _run_prefixes(cfg, set_name)]
    if prefix not in prefixes and prefix != VALIDATION and not prefix.startswith(DENSE):
        return None  # teacher/..., train/...: not the evaluation's to judge
    if prefix not in prefixes:
        return f"this run makes no {prefix}/... figures; metric prefixes it makes: {prefixes}"
    family, _, metric = rest.partition("/")
    if family not in ("gold", "answer") or not metric:
        return None  # test/questions, test/rag/em (with a reader): not a ranking cut-off
    made = [f"recall@{k}" for k in cfg.ks] + [f"mrr@{RANK_CUTOFF}", f"ndcg@{RANK_CUTOFF}"]
    if metric not in made:
        return f"the evaluation makes {family}/{made} (evaluation.ks={list(cfg.ks)}), not {family}/{metric}"
    return None


ENCODE_KEYS = {
    "encode_batch_size": "batch_size",
    "accelerator": "accelerator",
    "precision": "precision",
    "encode_quantize": "quantize",
    "encode_threads": "threads",
    "encode_max_tokens": "max_tokens",
    "encode_backend": "backend",
    "encode_export_dir": "export_dir",
}
"""``evaluation.*`` keys of the encoding settings -> :class:`EncodeSettings` fields."""


def encode_settings(cfg: DictConfig) -> EncodeSettings:
    """The corpus and question encoding settings of the ``evaluation`` config group.

    A key the config lacks (one written before the key existed) takes the :class:`EncodeSettings` default.

    Raises:
        ValueError: Naming the ``evaluation.*`` key whose value the setting does not accept.
    """
    return EncodeSettings.from_keys(cfg, ENCODE_KEYS, "evaluation")


def _reader_settings(cfg: DictConfig) -> tuple[int, list[str]]:
    """``evaluation.reader_top_k`` and ``reader_runs``, with their defaults for configs written before them."""
    return cfg.get("reader_top_k", 5), list(cfg.get("reader_runs", [DENSE]))


def _run_prefixes(cfg: DictConfig, dense: str = DENSE) -> list[str]:
    """The runs an evaluation with these settings makes on one set, by metric prefix (``dense`` the retriever's)."""
    prefixes = [dense]
    if cfg.bm25_baseline:
        prefixes.append(f"{dense}_bm25")
    if (fusion := _fusion(cfg)) is not None:
        prefixes.append(f"{dense}_fusion_{fusion}")
    return prefixes


def _label(prefix: str, dense: str = DENSE) -> str:
    """Legend label of a run prefix: ``test`` → ``dense``, ``test_fusion_rrf`` → ``dense + BM25 (rrf)``."""
    if prefix == dense:
        return "dense"
    if prefix == f"{dense}_bm25":
        return "BM25"
    return f"dense + BM25 ({prefix.removeprefix(f'{dense}_fusion_')})"


def evaluate_retriever(
    retriever: BiEncoderModule,
    data: RetrievalData,
    index: FaissIndex,
    cfg: DictConfig,
    run_dir: Path,
    bm25: BM25Candidates | None = None,
    reader: Reader | None = None,
    validation: Sequence[Question] = (),
    prefix: str = DENSE,
) -> dict[str, float]:
    """Score the retriever (and BM25 and their fusion, when configured) on ``data.eval``.

    Writes the faiss index to ``run_dir/index``, ``run_dir/recall_at_k.png`` and each run with the qrels it
    was scored against in TREC format under ``run_dir/runs``; an extra evaluation set (``prefix`` other
    than ``test``) writes ``recall_at_k_<prefix>.png``, ``runs/<prefix>*.run`` and ``runs/<prefix>_gold.qrels``
    and no index. With a reader, also the
    reader's answers from the top-``reader_top_k`` of each run in ``evaluation.reader_runs``
    (``answers_<prefix>.jsonl``) and their EM/F1.

    Args:
        retriever: The retriever under test.
        data: Corpus and evaluation questions.
        index: An empty faiss index to fill with the corpus.
        cfg: The ``evaluation`` config group (ks, depth, bm25_baseline, fusion, encoding settings).
        run_dir: Where the index and the plot go.
        bm25: A fitted BM25 first stage over the same corpus, needed for the baseline and fusion.
        reader: The RAG reader (``reader=lm``), or None for retrieval metrics only.
        validation: Training questions held out from fitting. They are searched in the same index and scored
            as ``val/...``, the metric a hyperparameter search should optimise: choosing settings by
            ``test/...`` would tune them to the questions they are reported on.
        prefix: The metric prefix of the retriever's figures: ``test`` for the run's data, an evaluation set's
            name (``evaluation.sets``) for the others; BM25 and fusion get ``<prefix>_bm25``, ``<prefix>_fusion_rrf``.

    Returns:
        Flat metrics, e.g. ``test/gold/recall@5``, ``test_bm25/gold/recall@5``, ``test_fusion_rrf/gold/mrr@10``,
        ``val/gold/recall@5`` with validation questions, and with a reader ``test/rag/em``, ``test/rag/f1``.
    """
    if not data.eval:
        raise ValueError(f"data set {data.name!r} has no evaluation questions")
    depth = max(cfg.depth, *cfg.ks)
    encode = encode_settings(cfg)
    with encoding_copies(retriever, encode):  # int8 / half towers made once for the corpus and both searches
        build_index(retriever, data.corpus, index, encode)
        if cfg.save_index and prefix == DENSE and is_global_zero():  # under DDP every rank builds it; rank 0 writes
            index.save(run_dir / "index")
        runs = {prefix: as_run(search(retriever, index, data.eval, depth, encode))}
        validation_run = as_run(search(retriever, index, list(validation), depth, encode)) if validation else None
    if needs_bm25(cfg):
        if bm25 is None:
            raise ValueError("evaluation.bm25_baseline / evaluation.fusion need a fitted BM25 first stage")
        bm25_run = as_run(bm25.retrieve(data.eval, depth))
        if cfg.bm25_baseline:
            runs[f"{prefix}_bm25"] = bm25_run
        if (fusion := _fusion(cfg)) is not None:
            runs[f"{prefix}_fusion_{fusion}"] = fuse_runs([runs[prefix], bm25_run], method=fusion)

    relevance = answer_qrels(data.eval, data.corpus)
    metrics: dict[str, float] = {}
    for run_prefix, run in runs.items():
        scored = evaluate_run(run, data.eval, data.corpus, cfg.ks, answer_relevance=relevance)
        metrics |= {f"{run_prefix}/{name}": value for name, value in scored.items()}
        logger.info(
            "%-18s gold R@1 %.3f  R@5 %.3f  R@20 %.3f  MRR@10 %.3f",
            run_prefix,
            *(scored.get(f"gold/{m}", float("nan")) for m in ("recall@1", "recall@5", "recall@20", "mrr@10")),
        )
    metrics[f"{prefix}/questions"] = float(len(data.eval))
    qrels_prefix = "" if prefix == DENSE else f"{prefix}_"
    trec_runs = dict(runs)
    trec_qrels = {f"{qrels_prefix}gold": gold_qrels(data.eval), f"{qrels_prefix}answer": relevance}
    if validation and validation_run is not None:
        val_relevance = answer_qrels(validation, data.corpus)
        scored = evaluate_run(validation_run, validation, data.corpus, cfg.ks, answer_relevance=val_relevance)
        metrics |= {f"{VALIDATION}/{name}": value for name, value in scored.items()}
        metrics[f"{VALIDATION}/questions"] = float(len(validation))
        trec_runs[VALIDATION] = validation_run
        trec_qrels |= {f"{VALIDATION}_gold": gold_qrels(validation), f"{VALIDATION}_answer": val_relevance}
    if is_global_zero():
        plot_name = "recall_at_k.png" if prefix == DENSE else f"recall_at_k_{prefix}.png"
        _plot(metrics, list(runs), prefix, data.name, run_dir / plot_name)
        # every ``gold/*`` figure can be recomputed from these with trec_eval -c or ir_measures (``answer/recall@k``
        # is Success@k over answer.qrels times the share of answerable questions); val.run goes with val_*.qrels
        write_run_files(run_dir / RUNS_DIR, trec_runs, trec_qrels)
    if reader is not None:
        top_k, reader_runs = _reader_settings(cfg)
        metrics |= evaluate_reader(reader, {name: runs[name] for name in reader_runs}, data, top_k, run_dir)
    return metrics


def _plot(metrics: dict[str, float], prefixes: list[str], dense: str, name: str, path: Path) -> None:
    """Plot gold-paragraph recall@k, or answer-hit recall@k for data without gold labels, or nothing."""
    for family, what in (("gold", "gold-paragraph recall@k"), ("answer", "answer-hit top-k accuracy")):
        curves = {_label(p, dense): curves_from_metrics(metrics, prefix=f"{p}/{family}/recall@") for p in prefixes}
        if all(curves.values()):
            plot_recall_at_k(curves, path, title=f"{name}: {what}")
            return
    logger.warning("No recall@k figures to plot (no gold ids and no answers in the evaluation questions)")
