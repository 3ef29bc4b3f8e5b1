"""The small SQuAD dev fixture shipped inside the package, for tests and ``data=fixture``.

About 200 paragraphs and 180 questions: enough for every stage (BM25 candidates, a teacher,
a training step, an index, metrics) to run for real in seconds on a laptop, with no download.
The files live in ``ragdistill/data/fixture/`` and were made by ``scripts/make_fixture.py``;
``ATTRIBUTION.md`` there says what was extracted from SQuAD and under which licence.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from importlib import resources
from importlib.resources.abc import Traversable

from ragdistill.data.jsonl import load_jsonl_data
from ragdistill.data.schemas import RetrievalData
from ragdistill.utils.constraints import NonNegativeInt

logger = logging.getLogger(__name__)

FIXTURE_FILES = ("corpus.jsonl", "train.jsonl", "eval.jsonl")
"""The fixture's files, in the order :func:`load_jsonl_data` takes them."""


def fixture_dir() -> Traversable:
    """Locate the fixture folder inside the installed package (works for any install layout)."""
    return resources.files("ragdistill.data") / "fixture"


def load_fixture(
    n_train: NonNegativeInt | None = None, n_eval: NonNegativeInt | None = None, seed: int = 0
) -> RetrievalData:
    """Load the shipped fixture through the same validating reader as users' JSONL data.

    Args:
        n_train: Keep this many of the 120 training questions (``None`` = all).
        n_eval: Keep this many of the 60 evaluation questions (``None`` = all).
        seed: Seed of the subsampling (see :func:`~ragdistill.data.sampling.sample_questions`).

    Returns:
        The data, named ``"fixture"``; passage ids are those of SQuAD-open (``dev-0002-017``).
    """
    folder = fixture_dir()
    with ExitStack() as stack:
        # as_file gives real paths even if the package is installed zipped.
        corpus, train, evaluation = (stack.enter_context(resources.as_file(folder / name)) for name in FIXTURE_FILES)
        return load_jsonl_data(corpus, train, evaluation, name="fixture", n_train=n_train, n_eval=n_eval, seed=seed)
