"""Retrieval metrics through ranx: relevance from gold passages and from answer strings.

Two notions of "relevant" are scored side by side:

- ``gold/*``: the passages humans labelled (``Question.gold_ids``; SQuAD's source paragraph),
  with their grades where the data has them (``Question.graded``; ``gold/ndcg@10`` uses the grade
  as gain, as trec_eval's ``ndcg_cut`` does). ``gold/recall@k`` is the fraction of a question's
  gold passages in its top k (ranx ``recall``).
- ``answer/*``: every passage that contains a gold answer string (DPR's weak relevance, which
  also credits other paragraphs that state the answer). ``answer/recall@k`` is DPR's "top-k
  retrieval accuracy": the fraction of questions with at least one answer-bearing passage in
  the top k (ranx ``hit_rate``), not the fraction of answer-bearing passages found.

Runs and qrels are plain dicts (``qid -> pid -> score`` and ``qid -> pid -> relevance``) so that
other stages can build and cache them without importing ranx.

ranx compiles its metrics with numba. The first ``evaluate`` of a process costs ~15-25 s when
numba compiles (a fresh environment, or passage ids of a string length not seen before, since
ranx types ids as fixed-width numpy strings) and ~3-5 s when it loads its on-disk cache; later
calls take ~0.1 s for 1,000 questions x 100 passages. So score all metrics in one call.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

from ragdistill.data.answers import at_word_boundaries, normalize_text
from ragdistill.data.schemas import Passage, Question

logger = logging.getLogger(__name__)

RunDict = dict[str, dict[str, float]]
QrelsDict = dict[str, dict[str, int]]

DEFAULT_KS = (1, 5, 20, 100)
# Rank-sensitive metrics are cut at 10, as in MS MARCO / BEIR reporting.
RANK_CUTOFF = 10

# A maximal run of letters and digits: exactly the characters ``str.isalnum`` accepts.
_ALNUM_RUN = re.compile(r"[^\W_]+")
# Joins normalised passages; never occurs inside one (whitespace is collapsed to spaces), so no
# answer match can span two passages.
_SEPARATOR = "\n"


def gold_qrels(questions: Iterable[Question]) -> QrelsDict:
    """Relevance from human labels: each question's graded judgements, else its ``gold_ids`` at relevance 1.

    Grades are kept as they are (BEIR's 1 = partly, 2 = highly relevant) because nDCG's gain is the
    grade: flattening them to 1 would report a ranking that puts a partly relevant passage first as
    perfect. Recall and MRR count every graded passage as relevant. Questions without gold ids are
    left out (they cannot be scored on this notion).
    """
    return {q.id: dict(q.graded) if q.graded else dict.fromkeys(q.gold_ids, 1) for q in questions if q.gold_ids}


def answer_qrels(questions: Iterable[Question], corpus: Sequence[Passage], *, whole_words: bool = True) -> QrelsDict:
    """Relevance from answer strings: every passage of the corpus that contains a gold answer.

    Exhaustive over the corpus, yet fast (1-2.5 s for 21k passages x 1k questions; slower when
    many answers are strings of very common words, whose candidate lists are long): passages are
    normalised once, an inverted index over the words that occur in some answer narrows each
    answer to the passages holding all of its words, and only those are checked with
    ``str.find``. Answers without a usable word (``"%"``, or a single word when
    ``whole_words=False``, which may match inside a longer word) fall back to one C-speed
    ``str.find`` scan of the whole joined corpus (~7 ms per answer on 11 MB of text, so
    ``whole_words=False`` is several times slower). See :class:`_AnswerFinder`.

    Args:
        questions: Questions; those without a non-empty answer are left out.
        corpus: Every passage.
        whole_words: Require the match not to start or end inside a word (``"1"`` does not match
            ``"1990"``), approximating DPR's token-level ``has_answer``. ``False`` gives plain
            substring matching.

    Returns:
        ``qid -> pid -> 1`` for the questions with at least one answer-bearing passage. Questions
        whose answers occur nowhere are left out; :func:`evaluate_run` counts them as misses.
    """
    start = time.perf_counter()
    answers_of = {q.id: {a for a in map(normalize_text, q.answers) if a} for q in questions}
    answers_of = {qid: answers for qid, answers in answers_of.items() if answers}
    finder = _AnswerFinder([normalize_text(p.text) for p in corpus], whole_words)
    rows_of = finder.find_all(set().union(*answers_of.values()))  # answer -> passage rows
    qrels: QrelsDict = {}
    for qid, answers in answers_of.items():
        rows = sorted(set().union(*(rows_of[a] for a in answers)))
        if rows:
            qrels[qid] = {corpus[r].id: 1 for r in rows}
    logger.info(
        "Answer qrels: %d of %d questions with answers have an answer-bearing passage among %d (%.2f s)",
        len(qrels),
        len(answers_of),
        len(corpus),
        time.perf_counter() - start,
    )
    return qrels


class _AnswerFinder:
    """Find every passage containing a string, over normalised passages.

    Why the index is exact: with ``whole_words``, each maximal alphanumeric run of the answer is
    also a maximal run (a word) of any passage the answer occurs in, because the characters
    around it are either non-alphanumeric characters of the answer itself or the passage
    characters the boundary check requires to be non-alphanumeric. So a passage lacking one of
    the answer's words cannot contain the answer. Without ``whole_words`` only the words not
    touching the ends of the answer have that property.
    """

    def __init__(self, passages: list[str], whole_words: bool) -> None:
        self.passages = passages
        self.whole_words = whole_words
        self._haystack: str | None = None
        self._offsets: list[int] = []

    def find_all(self, answers: Iterable[str]) -> dict[str, list[int]]:
        """Rows of the passages containing each answer, in corpus order."""
        anchors = {a: self._anchor_words(a) for a in answers}
        postings = self._postings(set().union(*anchors.values()))
        return {a: self._find(a, words, postings) for a, words in anchors.items()}

    def _anchor_words(self, answer: str) -> set[str]:
        """Words of ``answer`` that every passage containing it must hold as whole words."""
        return {
            m.group()
            for m in _ALNUM_RUN.finditer(answer)
            if self.whole_words or (m.start() > 0 and m.end() < len(answer))
        }

    def _postings(self, vocabulary: set[str]) -> dict[str, set[int]]:
        """Inverted index restricted to ``vocabulary`` (the answers' words): word -> rows."""
        postings: dict[str, set[int]] = {w: set() for w in vocabulary}
        for row, text in enumerate(self.passages):
            for word in vocabulary.intersection(_ALNUM_RUN.findall(text)):
                postings[word].add(row)
        return postings

    def _find(self, answer: str, words: set[str], postings: Mapping[str, set[int]]) -> list[int]:
        if not words:
            return self._scan(answer)
        rarest, *rest = sorted((postings[w] for w in words), key=len)
        candidates = rarest.intersection(*rest)
        if self.whole_words and answer in words:
            return sorted(candidates)  # a one-word answer: every passage holding the word matches
        return [r for r in sorted(candidates) if _contains(self.passages[r], answer, self.whole_words)]

    def _scan(self, answer: str) -> list[int]:
        """Exhaustive fallback: ``str.find`` over all passages joined, offsets mapped by bisect."""
        if self._haystack is None:
            self._haystack = _SEPARATOR.join(self.passages)
            self._offsets = _passage_offsets(self.passages)
        haystack, offsets = self._haystack, self._offsets
        rows: list[int] = []
        pos = haystack.find(answer)
        while pos != -1:
            if self.whole_words and not at_word_boundaries(haystack, pos, answer):
                pos = haystack.find(answer, pos + 1)
                continue
            row = bisect_right(offsets, pos) - 1
            rows.append(row)
            if row + 1 == len(offsets):
                break
            pos = haystack.find(answer, offsets[row + 1])  # one hit per passage is enough
        return rows


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    questions: Sequence[Question],
    corpus: Sequence[Passage] | None,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    answer_relevance: QrelsDict | None = None,
) -> dict[str, float]:
    """Score a run against gold passages and answer strings with ranx.

    Only the questions in ``questions`` are scored: run entries for other qids are ignored, and
    a question missing from the run (or with an empty entry) scores 0, never drops out.
    Questions whose answers occur in no passage also score 0 on ``answer/*``, as in DPR's top-k
    accuracy, whose denominator is every question with an answer.

    Args:
        run: ``qid -> pid -> score``, higher = better.
        questions: The evaluation questions (their gold ids and answers define relevance).
        corpus: The passages the answers are searched in; ``None`` skips ``answer/*`` unless
            ``answer_relevance`` is given.
        ks: Cut-offs for ``gold/recall@k`` and ``answer/recall@k``.
        answer_relevance: Precomputed :func:`answer_qrels` of ``questions`` over ``corpus``, to
            avoid recomputing them when several runs are scored.

    Returns:
        Flat ``family/metric@k`` keys (``gold/recall@5``, ``gold/mrr@10``, ``gold/ndcg@10``,
        ``answer/recall@5``, ``answer/mrr@10``, ``answer/ndcg@10``) mapped to Python floats. A
        family is left out (with a warning) when no question can be scored on it.
    """
    rank_metrics = {f"mrr@{RANK_CUTOFF}": f"mrr@{RANK_CUTOFF}", f"ndcg@{RANK_CUTOFF}": f"ndcg@{RANK_CUTOFF}"}
    results: dict[str, float] = {}

    gold = gold_qrels(questions)
    if gold:
        gold_metrics = {f"recall@{k}": f"recall@{k}" for k in ks} | rank_metrics
        results |= _prefixed("gold", _ranx_means(run, gold, gold_metrics))
    else:
        logger.warning("No question has gold passage ids; gold/* metrics are skipped")

    answerable = {q.id for q in questions if any(normalize_text(a) for a in q.answers)}
    if answer_relevance is None and corpus is not None and answerable:
        answer_relevance = answer_qrels(questions, corpus)
    if answer_relevance is not None and answerable:
        found = {qid: rels for qid, rels in answer_relevance.items() if qid in answerable and rels}
        answer_metrics = {f"recall@{k}": f"hit_rate@{k}" for k in ks} | rank_metrics
        means = _ranx_means(run, found, answer_metrics)
        # Questions with no answer-bearing passage are absent from the qrels; they are misses.
        share = len(found) / len(answerable)
        results |= _prefixed("answer", {name: v * share for name, v in means.items()})
    else:
        logger.warning("No question has an answer (or no corpus was given); answer/* metrics are skipped")
    return results


def _passage_offsets(normed: Sequence[str]) -> list[int]:
    """Start offset of each passage in ``_SEPARATOR.join(normed)``."""
    offsets, pos = [], 0
    for text in normed:
        offsets.append(pos)
        pos += len(text) + len(_SEPARATOR)
    return offsets


def _contains(text: str, answer: str, whole_words: bool) -> bool:
    """Whether ``answer`` occurs in ``text`` (at word boundaries if ``whole_words``)."""
    pos = text.find(answer)
    while pos != -1:
        if not whole_words or at_word_boundaries(text, pos, answer):
            return True
        pos = text.find(answer, pos + 1)
    return False


def _ranx_means(
    run: Mapping[str, Mapping[str, float]], qrels: QrelsDict, metrics: Mapping[str, str]
) -> dict[str, float]:
    """Mean of each ranx metric over the qids of ``qrels``.

    Args:
        run: The run; entries for qids outside ``qrels`` are dropped, because ranx asserts that
            run and qrels hold the same qids.
        qrels: Relevance judgements; every entry must hold a relevant passage.
        metrics: Our metric name -> ranx metric name.

    Returns:
        Our metric name -> mean over all qids of ``qrels``; a qid absent from the run is given an
        empty ranking and so scores 0 (ranx scores an empty ranking as a miss).
    """
    from ranx import Qrels, Run, evaluate  # deferred: importing ranx costs ~1.5 s

    aligned = {qid: {str(pid): float(s) for pid, s in run.get(qid, {}).items()} for qid in qrels}
    if not any(aligned.values()):
        # ranx cannot build a Qrels or Run without a single passage id; every metric is then 0.
        return dict.fromkeys(metrics, 0.0)
    names = list(metrics.values())
    with warnings.catch_warnings():
        # numba's compile-time note about a uint64 -> int64 cast inside ranx; harmless.
        warnings.filterwarnings("ignore", message=".*unsafe cast.*")
        scores = evaluate(Qrels(qrels), Run(aligned), names, make_comparable=False, save_results_in_run=False)
    if not isinstance(scores, dict):  # ranx returns a bare number for a single metric
        scores = {names[0]: scores}
    return {ours: float(scores[theirs]) for ours, theirs in metrics.items()}


def _prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in values.items()}
