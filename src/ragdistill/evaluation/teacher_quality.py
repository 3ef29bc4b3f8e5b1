"""How good a teacher's judgement is, measured against the labels the teacher did not use.

A teacher that rarely puts the gold paragraph first cannot teach a retriever to; these figures tell a user
which teacher (or attention variant) to pick before any training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ragdistill.data.answers import has_answer
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal

logger = logging.getLogger(__name__)

NEAR_UNIFORM = 0.98
"""Entropy, as a share of the uniform distribution's, from which a teacher is flagged as saying nothing."""

TOP1_MARGIN = 0.05
"""How far ``top1_gold`` may sit above chance, or below the first stage's own order, before it is flagged."""


def _entropy(scores: np.ndarray) -> float:
    """Entropy (nats) of softmax over the judged scores (temperature 1: log-probability teachers)."""
    judged = scores[np.isfinite(scores)].astype(np.float64)
    if len(judged) < 2:
        return 0.0
    probs = np.exp(judged - judged.max())
    probs /= probs.sum()
    return float(-(probs * np.log(np.clip(probs, 1e-300, None))).sum())


def _first_stage_best(signal: TeacherSignal, judged: list[int], ranked: RankedList) -> str:
    """The judged candidate the first stage ranked highest (unranked ones, e.g. added positives, last)."""
    rank = {pid: i for i, pid in enumerate(ranked.ids)}
    return min((signal.candidate_ids[i] for i in judged), key=lambda pid: rank.get(pid, len(rank)))


def teacher_quality(
    signals: list[TeacherSignal],
    questions: list[Question],
    data: RetrievalData,
    candidates: Mapping[str, RankedList] | None = None,
    *,
    reads_scores: bool = True,
) -> dict[str, float]:
    """Return ``teacher/*`` figures over the signals whose candidate pool holds a gold paragraph.

    - ``top1_gold``: the teacher's best candidate is the gold paragraph (among questions whose pool has one);
    - ``top1_answer``: its best candidate contains a gold answer string (among pools with such a passage);
    - ``gold_in_pool``: the share of signals whose pool holds a gold paragraph (the ceiling of ``top1_gold``);
    - ``entropy``: mean entropy of the teacher's softmax over its judged candidates (temperature 1);
    - ``uniform_entropy``: the mean of log(judged candidates), what a teacher that says nothing would score;
    - ``random_top1_gold``: what picking a judged candidate at random would score, for reference;
    - ``first_stage_top1_gold`` (given ``candidates``): the same rate for the first stage's own order over
      the same pool: the bar a teacher has to clear to tell the student more than the candidates' order;
    - ``<diagnostic>``: the mean of each per-question diagnostic the teacher reported.

    A teacher's own indicators (e.g. the attention teacher's lifts) come from its
    :meth:`~ragdistill.teachers.base.Teacher.quality` hook, which the pipeline adds beside these.

    A teacher these figures call useless gets a logged warning (:func:`weak_teacher_warnings`);
    ``reads_scores`` (the loss's ``reads_teacher_scores``) says whether the student learns the teacher's
    scores, or only its positives (InfoNCE), which no score distribution can spoil.
    """
    by_id = {q.id: q for q in questions}
    gold_hits, gold_pools, answer_hits, answer_pools, chance, entropies = 0, 0, 0, 0, 0.0, []
    uniform_entropies = []
    first_stage_hits = 0
    for signal in signals:
        question = by_id[signal.qid]
        judged = [i for i, s in enumerate(signal.scores) if np.isfinite(s)]
        best = signal.candidate_ids[int(np.argmax(signal.scores))]
        entropies.append(_entropy(signal.scores))
        uniform_entropies.append(float(np.log(max(len(judged), 1))))
        gold = set(question.gold_ids)
        if gold & {signal.candidate_ids[i] for i in judged}:
            gold_pools += 1
            gold_hits += best in gold
            chance += len(gold & {signal.candidate_ids[i] for i in judged}) / len(judged)
            if candidates is not None and signal.qid in candidates:
                first_stage_hits += _first_stage_best(signal, judged, candidates[signal.qid]) in gold
        if question.answers:
            answering = [has_answer(data.passage(signal.candidate_ids[i]).text, question.answers) for i in judged]
            if any(answering):
                answer_pools += 1
                answer_hits += has_answer(data.passage(best).text, question.answers)
    if not signals:
        return {}
    figures = {
        "teacher/gold_in_pool": gold_pools / len(signals),
        "teacher/entropy": float(np.mean(entropies)),
        "teacher/uniform_entropy": float(np.mean(uniform_entropies)),
    }
    if gold_pools:
        figures |= {"teacher/top1_gold": gold_hits / gold_pools, "teacher/random_top1_gold": chance / gold_pools}
        if candidates is not None:
            figures["teacher/first_stage_top1_gold"] = first_stage_hits / gold_pools
    if answer_pools:
        figures["teacher/top1_answer"] = answer_hits / answer_pools
    for key in sorted({key for signal in signals for key in signal.diagnostics}):  # e.g. AAR's lm_positive_is_gold
        values = [signal.diagnostics[key] for signal in signals if key in signal.diagnostics]
        figures[f"teacher/{key}"] = float(np.mean(values))
    for warning in weak_teacher_warnings(figures, reads_scores=reads_scores):
        logger.warning(warning)
    return figures


def weak_teacher_warnings(figures: Mapping[str, float], *, reads_scores: bool = True) -> list[str]:
    """Why a student distilled from this teacher would likely end up worse than it started, if it would.

    Each case was measured on SQuAD-open (docs/results/): a teacher that is almost uniform over its candidates
    (an intermediate ranker fit on 80 LLM orders: entropy 2.301 of 2.303 nats, top-1 gold 10.6%) or that puts
    the gold paragraph first less often than BM25's own order (the raw reader's attention, 41.7% vs 75.5%)
    gave retrievers below the untrained MiniLM. The figures are :func:`teacher_quality`'s.

    The uniform-scores warning presumes a loss that reads the scores (``reads_scores``): a gold teacher's
    scores are flat over its negatives by design, and InfoNCE reads only which passage is the positive.
    """
    warnings = []
    entropy, uniform = figures.get("teacher/entropy"), figures.get("teacher/uniform_entropy")
    if reads_scores and entropy is not None and uniform and entropy >= NEAR_UNIFORM * uniform:
        warnings.append(
            f"The teacher's scores are almost uniform over its candidates (mean entropy {entropy:.3f} nats, "
            f"uniform {uniform:.3f}): a KL or listwise student learns to flatten its own ranking, not to "
            "reorder it. Check that the teacher learned something (e.g. an intermediate ranker fit on too few "
            "LLM-ranked questions), or sharpen the target (loss.tau_teacher < 1)."
        )
    top1, chance = figures.get("teacher/top1_gold"), figures.get("teacher/random_top1_gold")
    if top1 is not None and chance is not None and top1 <= chance + TOP1_MARGIN:
        warnings.append(
            f"The teacher's best candidate is the gold paragraph for {top1:.1%} of the questions, about what "
            f"picking at random gives ({chance:.1%}): it is unlikely to teach the retriever anything."
        )
    first_stage = figures.get("teacher/first_stage_top1_gold")
    if top1 is not None and first_stage is not None and top1 < first_stage - TOP1_MARGIN:
        warnings.append(
            f"The teacher puts the gold paragraph first for {top1:.1%} of the questions, less often than the "
            f"first stage's own order ({first_stage:.1%}): distilling it can make the retriever worse than "
            "it started (docs/results/lm_teachers.md: the raw reader's attention)."
        )
    return warnings
