"""Deterministic subsampling of questions, shared by every loader.

One function, so that ``n_train=1000, seed=0`` picks the same questions whichever loader read
them and however the file was ordered: the choice depends only on the set of ids and the seed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence

from ragdistill.data.schemas import Passage, Question, RetrievalData

logger = logging.getLogger(__name__)


def sample_questions(questions: Sequence[Question], n: int | None, seed: int, *, split: str) -> list[Question]:
    """Pick ``n`` questions reproducibly: sort by id, then ``random.Random(seed).sample``.

    Sorting first makes the choice independent of the order the questions were read in; the
    chosen questions are returned in their input order, so a loader's order (file order,
    document order for SQuAD) survives.

    Args:
        questions: Questions with unique ids (the loaders check this).
        n: How many to keep; ``None`` keeps all. A number larger than available keeps all
            and logs a warning, so a config written for the full data set still runs on a
            small one.
        seed: Seed of the sampler; the same seed and ids give the same choice.
        split: Name of the split (``"train"``, ``"eval"``), for the log.

    Returns:
        The chosen questions, in input order.

    Raises:
        ValueError: If ``n`` is negative.
    """
    if n is None:
        return list(questions)
    if n < 0:
        raise ValueError(f"n_{split} must be >= 0 or None (all), got {n}")
    if n >= len(questions):
        if n > len(questions):
            logger.warning(
                "Requested n_%s=%d but only %d %s questions are available; using all of them",
                split,
                n,
                len(questions),
                split,
            )
        return list(questions)
    by_id = sorted(questions, key=lambda q: q.id)
    chosen = {q.id for q in random.Random(seed).sample(by_id, n)}
    logger.info("Sampled %d of %d %s questions <seed=%d>", n, len(questions), split, seed)
    return [q for q in questions if q.id in chosen]


def sample_corpus(
    corpus: Sequence[Passage], size: int | None, seed: int, keep: Iterable[Question] = ()
) -> list[Passage]:
    """Shrink a corpus to ``size`` passages for quick runs, never dropping a gold passage of ``keep``.

    Every gold passage of the kept questions stays (so every question remains answerable), and
    the rest is a seeded random sample of the other passages, returned in corpus order. Metrics on
    a shrunk corpus are higher than on the full one: use it to iterate, not to report.

    Args:
        corpus: The full corpus.
        size: Target size; ``None`` (or a size >= the corpus) keeps everything.
        seed: Seed of the distractor sample.
        keep: Questions whose gold passages must stay.

    Raises:
        ValueError: If ``size`` is smaller than the number of gold passages to keep.
    """
    if size is None or size >= len(corpus):
        return list(corpus)
    gold = {pid for q in keep for pid in q.gold_ids}
    if size < len(gold):
        raise ValueError(f"corpus_size={size} is smaller than the {len(gold)} gold passages of the chosen questions")
    others = sorted(p.id for p in corpus if p.id not in gold)
    chosen = gold | set(random.Random(seed).sample(others, size - len(gold)))
    logger.info("Shrunk the corpus to %d of %d passages (%d gold) <seed=%d>", size, len(corpus), len(gold), seed)
    return [p for p in corpus if p.id in chosen]


def assemble_data(
    name: str,
    corpus: list[Passage],
    train: Sequence[Question],
    evaluation: Sequence[Question],
    n_train: int | None,
    n_eval: int | None,
    seed: int,
) -> RetrievalData:
    """The :class:`RetrievalData` every loader returns: its questions subsampled by :func:`sample_questions`."""
    data = RetrievalData(
        name=name,
        corpus=corpus,
        train=sample_questions(train, n_train, seed, split="train"),
        eval=sample_questions(evaluation, n_eval, seed, split="eval"),
    )
    logger.info("Loaded %s", data.summary())
    return data
