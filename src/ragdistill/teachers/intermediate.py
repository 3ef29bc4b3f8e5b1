"""Intermediate Distillation: LLM orders → a cross-encoder ranker (ListMLE) → the ranker's scores for the retriever.

Stage 0 is the source teacher (an LLM's ranking of the K candidates: listwise generation, an API, or a
pointwise LM score; only its order is used), asked about the first ``llm_questions`` training questions
only — the paper's point is that ~1,000 LLM-ranked instances suffice. Stage 1 trains
:class:`~ragdistill.ranker.cross_encoder_module.CrossEncoderRanker` on those orders with ListMLE. Stage 2 scores
the K candidates of EVERY training question with the ranker; the retriever then learns that distribution
with KL (``loss=kl``).

Stage 0 is cached like any teacher signal (its own config keys it, see :class:`DerivedTeacher`); the
ranker is a cached artifact under ``<cache_dir>/rankers/<key>``, keyed by the stage-0 signals' content and
the ranker settings, so a loss or student sweep trains it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from scipy.stats import kendalltau
from torch.utils.data import DataLoader

from ragdistill.callbacks.lightning_progress import lightning_progress_bar
from ragdistill.data.distillation_datamodule import DistillationDataModule, SignalDataset, collate_groups
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.losses.checks import check_top_k
from ragdistill.losses.listmle import ListMLELoss
from ragdistill.ranker.cross_encoder_module import CrossEncoderRanker
from ragdistill.runtime.precision import resolve_precision
from ragdistill.runtime.predict import run_predict
from ragdistill.teachers.base import Derivation, DerivedTeacher, Teacher
from ragdistill.utils.cache_key import config_key
from ragdistill.utils.constraints import AtLeastTwo, NonNegativeInt, PositiveInt, Precision
from ragdistill.utils.manifest import MANIFEST_FILE, artifact_problem, write_manifest

logger = logging.getLogger(__name__)

DONE_FILE = "ranker_done.json"
"""Written last into a ranker folder: its presence means the artifact is complete (with its figures)."""


class IntermediateTeacher(DerivedTeacher):
    """Distil an LLM's candidate orders through a cross-encoder ranker (arXiv:2406.12169).

    Formula: stage 1 minimises ListMLE ``-Σ_k log softmax(r(q, d_π(k..K)))_1`` of the LLM's order π under the
    ranker's scores ``r``; stage 2's signal is ``r(q, d)`` over the same K candidates (higher = better).

    Args:
        source: Stage 0, the LLM ranking (any teacher; only the order of its scores is read).
        llm_questions: How many training questions (the first, in data order) the LLM ranks; ``None`` = all.
            The ranker trains on them (less a random ``val_size`` held out) and labels the rest.
        num_candidates: K, the first-stage candidates per question the ranker scores in stage 2 (the
            source's K by default in the config).
        ranker_path: The ranker's backbone (packaged MiniLM by default; any hub id or folder).
        max_length: Question + passage tokens the ranker reads.
        epochs: Ranker training epochs over the stage-0 questions.
        min_steps: Train the ranker for at least this many optimizer steps, with more epochs where the
            stage-0 questions are few; ``None``: ``epochs`` only. It holds the ranker's training length
            fixed across question budgets (one epoch over 80 questions is 10 steps, over 900 it is 112).
        batch_size: Questions per ranker batch (each brings its K candidates).
        lr: Ranker learning rate.
        ranker_top_k: Teach the ranker only the first k positions of each stage-0 order (top-k ListMLE);
            ``None``: the whole order.
        val_size: Stage-0 questions held out to measure the ranker (agreement with the LLM).
        precision: Lightning precision of ranker training and scoring.
        accelerator: Lightning accelerator.
        cache_dir: Where trained rankers are kept (``<cache_dir>/rankers/<key>``).
        seed: Seed of the split and the shuffles.
        ranker_trust_remote_code: Run Python code shipped with a hub ranker backbone (off by default).
    """

    def __init__(
        self,
        source: Teacher,
        llm_questions: AtLeastTwo | None = None,
        num_candidates: AtLeastTwo = 10,
        ranker_path: str = "packaged:all-MiniLM-L6-v2",
        max_length: int = 320,
        epochs: PositiveInt = 1,
        min_steps: int | None = None,
        batch_size: PositiveInt = 8,
        lr: float = 3e-5,
        ranker_top_k: int | None = None,
        val_size: NonNegativeInt = 100,
        precision: Precision = "bf16-mixed",
        accelerator: str = "auto",
        cache_dir: str = ".cache/ragdistill",
        seed: int = 0,
        ranker_trust_remote_code: bool = False,
    ) -> None:
        if epochs < 1 or batch_size < 1 or val_size < 0:
            raise ValueError(
                f"teacher.epochs/batch_size must be >= 1, val_size >= 0; got {epochs}, {batch_size}, {val_size}"
            )
        if min_steps is not None and min_steps < 1:
            raise ValueError(f"teacher.min_steps must be null or >= 1, got {min_steps}")
        if (llm_questions is not None and llm_questions < 2) or num_candidates < 2:
            raise ValueError(
                f"teacher.llm_questions (null or >= 2) and num_candidates (>= 2): got {llm_questions}, {num_candidates}"
            )
        self.source = source
        self.llm_questions = llm_questions
        self.num_candidates = num_candidates
        self.ranker_path = ranker_path
        self.max_length = max_length
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.ranker_loss = ListMLELoss(
            temperature=1.0, top_k=check_top_k("teacher.ranker_top_k", ranker_top_k)
        )  # the ranker's scores are unbounded
        self.val_size = val_size
        self.seed = seed
        # what the ranker really trains in (its cache key holds it): float32 on a CPU without native bfloat16
        self.precision = resolve_precision(precision, accelerator)
        self.accelerator = accelerator
        self.cache_dir = Path(cache_dir)
        self.ranker_trust_remote_code = ranker_trust_remote_code
        self._figures: dict[str, float] = {}

    def metrics(self) -> dict[str, float]:
        """Stage 0's throughput figures and the ranker's: agreement with the LLM on held-out questions, time."""
        return self.source.metrics() | self._figures

    def source_questions(self, questions: list[Question]) -> list[Question]:
        """The first ``llm_questions`` (a prefix, so a full run's cached LLM shards are reused)."""
        return questions if self.llm_questions is None else questions[: self.llm_questions]

    def derive(
        self,
        signals: list[TeacherSignal],
        questions: list[Question],
        candidates: dict[str, RankedList],
        data: RetrievalData,
    ) -> Derivation:
        """Train (or load) the ranker on the stage-0 orders; return its scores over every question's K candidates."""
        ordered = [s for s in signals if np.isfinite(s.scores).sum() >= 2]
        if len(ordered) < len(signals):
            logger.info(
                "Intermediate: %d of %d questions have < 2 ranked candidates; left out",
                len(signals) - len(ordered),
                len(signals),
            )
        if not ordered:
            raise ValueError("stage 0 ranked fewer than 2 candidates for every question: nothing to train a ranker on")
        datamodule = DistillationDataModule(
            ordered,
            data,
            self.batch_size,
            None,
            val_size=self.val_size,
            seed=self.seed,
        )
        epochs = self._epochs(datamodule)
        folder = self.cache_dir / "rankers" / self._key(ordered, epochs)
        done = folder / DONE_FILE
        if done.exists() and (problem := _ranker_problem(folder)):
            logger.warning("Trained ranker <%s> is corrupt (%s); deleting it and training it again", folder, problem)
            shutil.rmtree(folder)
        if done.exists():
            logger.info("Reusing the trained ranker <%s>", folder)
            self._figures = json.loads(done.read_text()) | {"ranker/reused": 1.0}
        else:
            self._figures = self._train(datamodule, folder, epochs) | {"ranker/reused": 0.0}
        self._figures |= {
            "ranker/epochs": float(epochs),
            "ranker/llm_questions": float(len(ordered)),
            "ranker/train_questions": float(len(datamodule.train_signals)),
        }
        if datamodule.val_signals:
            self._figures["ranker/uniform_val_loss"] = uniform_list_mle(datamodule.val_signals, self.ranker_loss.top_k)
            if warning := ranker_overfit_warning(self._figures):
                logger.warning(warning)
        ranker = CrossEncoderRanker(
            str(folder), max_length=self.max_length, trust_remote_code=self.ranker_trust_remote_code
        ).eval()
        pools = []  # stage 2: every training question, LLM-ranked or not
        for question in questions:
            ids = candidates[question.id].ids[: self.num_candidates]
            if len(ids) >= 2:
                pools.append(TeacherSignal(question.id, ids, np.zeros(len(ids))))
        scored = self._score(ranker, pools, data)
        self._figures |= _agreement(datamodule.val_signals, self._held_out_scores(ranker, datamodule, scored, data))
        logger.info(
            "Ranker vs LLM on %d held-out questions: top-1 agrees %.1f%%, Kendall τ %.3f",
            len(datamodule.val_signals),
            100 * self._figures.get("ranker/top1_agrees", float("nan")),
            self._figures.get("ranker/kendall_tau", float("nan")),
        )
        return Derivation(scored)

    def _held_out_scores(
        self,
        ranker: CrossEncoderRanker,
        datamodule: DistillationDataModule,
        stage2: list[TeacherSignal],
        data: RetrievalData,
    ) -> list[TeacherSignal]:
        """The ranker's scores of the held-out questions over the LLM's candidates.

        Stage 2 already scored them when it used the same candidates (``num_candidates`` = the source's K,
        the default); otherwise they are scored again over the LLM's own candidates.
        """
        by_qid = {signal.qid: signal for signal in stage2}
        held_out = [by_qid.get(signal.qid) for signal in datamodule.val_signals]
        if all(
            got is not None and got.candidate_ids == want.candidate_ids
            for got, want in zip(held_out, datamodule.val_signals, strict=True)
        ):
            return [got for got in held_out if got is not None]
        return self._score(ranker, datamodule.val_signals, data)

    def _epochs(self, datamodule: DistillationDataModule) -> int:
        """Epochs to train: ``epochs``, or more where ``min_steps`` asks for more steps than one epoch has."""
        if self.min_steps is None:
            return self.epochs
        per_epoch = len(datamodule.train_dataloader())
        epochs = max(self.epochs, math.ceil(self.min_steps / per_epoch))
        if epochs > self.epochs:
            logger.info("Ranker: %d epochs of %d steps, for teacher.min_steps=%d", epochs, per_epoch, self.min_steps)
        return epochs

    def _key(self, signals: list[TeacherSignal], epochs: int) -> str:
        """What the ranker is a function of: the stage-0 signals' content and the ranker settings.

        ``epochs`` is the number really trained (``min_steps`` resolved), so a ``min_steps`` that one epoch
        already meets reuses the ranker cached without it.
        """
        digest = hashlib.sha256()
        for s in signals:
            digest.update(json.dumps([s.qid, list(s.candidate_ids), [float(x) for x in s.scores]]).encode())
        settings = [self.ranker_path, self.max_length, epochs, self.batch_size, self.lr, self.val_size]
        settings += [self.seed, self.precision]  # bf16 and float32 training give different rankers
        if self.ranker_loss.top_k is not None:  # added only when set: rankers cached before it keep their keys
            settings.append({"top_k": self.ranker_loss.top_k})
        return config_key({"ranker": settings, "stage0": digest.hexdigest()})

    def _train(self, datamodule: DistillationDataModule, folder: Path, epochs: int) -> dict[str, float]:
        """Fit the ranker on the stage-0 orders and save it atomically into ``folder``."""
        pl.seed_everything(self.seed, workers=True)
        ranker = CrossEncoderRanker(
            self.ranker_path,
            max_length=self.max_length,
            loss=self.ranker_loss,
            lr=self.lr,
            cache_dir=str(self.cache_dir),
            trust_remote_code=self.ranker_trust_remote_code,
        )
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator=self.accelerator,
            devices=1,
            precision=self.precision,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[lightning_progress_bar()],  # ranker training takes minutes to an hour: show steps and loss
        )
        logger.info("Training the cross-encoder ranker on %d stage-0 orders", len(datamodule.train_signals))
        start = time.perf_counter()
        trainer.fit(ranker, datamodule=datamodule)
        figures = {"runtime/ranker_fit_s": round(time.perf_counter() - start, 2)}
        for split in ("train", "val"):
            if (loss := trainer.callback_metrics.get(f"ranker_{split}/loss")) is not None:
                figures[f"ranker/{split}_loss"] = float(loss)
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        ranker.save(tmp)
        (tmp / DONE_FILE).write_text(json.dumps(figures))
        write_manifest(tmp)
        shutil.rmtree(folder, ignore_errors=True)  # a folder without DONE_FILE is a crashed earlier attempt
        os.replace(tmp, folder)
        return figures

    def _score(
        self, ranker: CrossEncoderRanker, signals: list[TeacherSignal], data: RetrievalData
    ) -> list[TeacherSignal]:
        """The ranker's scores over each signal's judged candidates, as new signals."""
        if not signals:
            return []
        dataset = SignalDataset(signals, data, None, self.seed)
        items = [dataset[i] for i in range(len(dataset))]  # built once: batched for the ranker, read back for ids
        # a list is a map-style dataset (as the LM runner's batches are)
        loader: DataLoader[dict[str, Any]] = DataLoader(
            items,  # type: ignore[arg-type]
            batch_size=4 * self.batch_size,
            shuffle=False,
            collate_fn=collate_groups,
        )
        scored = run_predict(ranker, loader, self.accelerator, self.precision, [lightning_progress_bar()])
        rows = [row for batch in scored for row in batch.float().numpy()]
        return [
            TeacherSignal(item["qid"], item["pids"], np.asarray(row[: len(item["pids"])], dtype=np.float32))
            for item, row in zip(items, rows, strict=True)
        ]


def _agreement(llm: list[TeacherSignal], ranker: list[TeacherSignal]) -> dict[str, float]:
    """How well the ranker reproduces the LLM's orders: top-1 agreement and mean Kendall τ (held-out questions)."""
    if not llm:
        return {}
    top1, taus = [], []
    for teacher, student in zip(llm, ranker, strict=True):
        by_id = dict(zip(teacher.candidate_ids, teacher.scores, strict=True))
        llm_scores = np.array([by_id[pid] for pid in student.candidate_ids])
        top1.append(float(np.argmax(llm_scores) == np.argmax(student.scores)))
        tau = kendalltau(llm_scores, student.scores).statistic
        if np.isfinite(tau):
            taus.append(float(tau))
    figures = {"ranker/top1_agrees": float(np.mean(top1)), "ranker/held_out": float(len(llm))}
    if taus:
        figures["ranker/kendall_tau"] = float(np.mean(taus))
    return figures


def uniform_list_mle(signals: list[TeacherSignal], top_k: int | None) -> float:
    """The ranker's ListMLE loss (temperature 1, as trained) if it scored every candidate alike.

    A Plackett–Luce ranker with equal scores picks each taught position among the ``n - i`` candidates left,
    so a question costs ``Σ_{i<k} log(n - i)`` (``k = n`` without ``top_k``): 4.50 for the top 2 of 10.
    Averaged over the questions, the bar a held-out loss must stay under for the ranker to have learned.
    """
    losses = []
    for signal in signals:
        judged = int(np.isfinite(signal.scores).sum())
        taught = judged if top_k is None else min(top_k, judged)
        losses.append(sum(math.log(judged - i) for i in range(taught)))
    return float(np.mean(losses))


def ranker_overfit_warning(figures: dict[str, float]) -> str | None:
    """Why the ranker's scores are likely worse than none, from its ``ranker/*`` figures, if they are.

    Measured on SQuAD-open (docs/results/intermediate.md): 12 epochs over 80 LLM-ranked questions ended at
    training loss 0.40 and held-out loss 10.5 against a uniform ranker's 4.50; its confident scores put the
    gold paragraph first for 18.5% of the pools and the retriever distilled from them fell 22.5 points R@1
    below the untrained one.
    """
    held_out, uniform = figures.get("ranker/val_loss"), figures.get("ranker/uniform_val_loss")
    if held_out is None or uniform is None or held_out <= uniform:
        return None
    return (
        f"The ranker's held-out ListMLE loss ({held_out:.3f}) is above a uniform ranker's ({uniform:.3f}; "
        f"training loss {figures.get('ranker/train_loss', float('nan')):.3f}): it memorised its "
        f"{figures.get('ranker/train_questions', float('nan')):.0f} training orders instead of learning the "
        "LLM's preference, and its scores will mislead the retriever. Rank more questions with the LLM "
        "(teacher.llm_questions); more epochs over the same ones (teacher.epochs, teacher.min_steps) overfit."
    )


def _ranker_problem(folder: Path) -> str | None:
    """Why a trained ranker folder must not be reused, or None; folders saved before manifests are trusted."""
    if not (folder / MANIFEST_FILE).exists():
        return None
    return artifact_problem(folder, required=[DONE_FILE])
