"""The records every stage passes around: passages, questions and a loaded data set.

Kept free of any loader or model so that data, candidates, teachers and evaluation can all
depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """One retrieval unit of the corpus (a paragraph, a passage, or a dialogue response).

    Attributes:
        id: Unique id inside the corpus.
        text: The text the retriever encodes and the reader reads.
        title: Optional title (the Wikipedia article for SQuAD); not encoded by default.
    """

    id: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Question:
    """One question with what is known about its answer.

    Attributes:
        id: Unique id among the questions of its split.
        text: The question as the user asked it.
        answers: Gold answer strings (may be empty for data without answers).
        gold_ids: Ids of passages labelled relevant by humans (may be empty).
        graded: Graded human judgements ``(passage id, grade)`` with grade >= 1, for data that has grades
            (BEIR and TREC qrels), so that nDCG weighs a highly relevant passage above a partly relevant one
            instead of flattening both to 1. Empty means every gold id has grade 1. When given, its ids are
            exactly ``gold_ids``, in the same order, so every stage that only knows ``gold_ids`` keeps working.
        negative_ids: Passages labelled as not answering it (DPR's ``hard_negative_ctxs``): the gold teacher
            trains on them instead of mining the first stage's candidates. Empty for data without them.
    """

    id: str
    text: str
    answers: tuple[str, ...] = ()
    gold_ids: tuple[str, ...] = ()
    graded: tuple[tuple[str, int], ...] = ()
    negative_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse grades that disagree with ``gold_ids``: the two must never tell different stories."""
        if not self.graded:
            return
        if tuple(pid for pid, _ in self.graded) != self.gold_ids:
            raise ValueError(f"question {self.id!r}: graded ids {self.graded} are not its gold_ids {self.gold_ids}")
        low = [(pid, grade) for pid, grade in self.graded if grade < 1]
        if low:
            raise ValueError(f"question {self.id!r}: grades must be >= 1 (non-relevant passages are left out): {low}")


@dataclass
class RetrievalData:
    """A corpus with its training and evaluation questions, as every loader returns it.

    Attributes:
        name: Short name of the data set, used in logs and reports.
        corpus: Every passage, in a fixed order (row i of an index is ``corpus[i]``).
        train: Questions the retriever (and its teacher) learn from.
        eval: Held-out questions for evaluation.
    """

    name: str
    corpus: list[Passage]
    train: list[Question]
    eval: list[Question]
    _by_id: dict[str, Passage] = field(default_factory=dict, init=False, repr=False)
    _training_only: dict[str, Passage] = field(default_factory=dict, init=False, repr=False)

    def passage(self, pid: str) -> Passage:
        """Return the passage with id ``pid`` (corpus or training-only); raise ``KeyError`` naming it if unknown."""
        found = self._corpus_by_id().get(pid) or self._training_only.get(pid)
        if found is None:
            raise KeyError(f"unknown passage id {pid!r} (corpus {self.name!r} has {len(self.corpus)} passages)")
        return found

    def add_training_passages(self, passages: list[Passage]) -> None:
        """Make ``passages`` readable by id for training only (e.g. G2R's generated positives).

        They are never part of :attr:`corpus`, so no index and no evaluation sees them: a generated passage
        is a training example, not a document a user could retrieve.

        Raises:
            ValueError: If an id is already a corpus passage (a generated unit must not shadow a real one).
        """
        clashes = [p.id for p in passages if p.id in self._corpus_by_id()]
        if clashes:
            raise ValueError(f"training-only passage ids clash with corpus ids: {clashes[:5]}")
        self._training_only.update((p.id, p) for p in passages)

    def add_corpus_passages(self, passages: list[Passage]) -> None:
        """Append ``passages`` to :attr:`corpus`, so every index built from now on holds them.

        For methods that augment the retrievable set itself (G2R's data level with ``index_generated``):
        the passages become documents a user can retrieve, and evaluation searches them.

        Raises:
            ValueError: If an id is already a passage (corpus or training-only).
        """
        clashes = [p.id for p in passages if p.id in self._corpus_by_id() or p.id in self._training_only]
        if clashes:
            raise ValueError(f"new corpus passage ids clash with existing ids: {clashes[:5]}")
        self.corpus.extend(passages)
        self._by_id = {}

    def _corpus_by_id(self) -> dict[str, Passage]:
        if not self._by_id:
            self._by_id = {p.id: p for p in self.corpus}
        return self._by_id

    def summary(self) -> str:
        """One line for the log: sizes of corpus and splits."""
        return (
            f"{self.name}: {len(self.corpus):,} passages, {len(self.train):,} train / {len(self.eval):,} eval questions"
        )
