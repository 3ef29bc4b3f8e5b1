"""Deterministic subsampling of questions, shared by every loader.

One function, so that ``n_train=1000, seed=0`` picks the same questions whichever loader read
them and however the file was ordered: the choice depends only on the set of ids and the seed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from ragdistill.data.schemas import Question

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
