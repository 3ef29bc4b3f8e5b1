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
    """

    id: str
    text: str
    answers: tuple[str, ...] = ()
    gold_ids: tuple[str, ...] = ()


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

    def passage(self, pid: str) -> Passage:
        """Return the passage with id ``pid``; raise ``KeyError`` naming it if unknown."""
        if not self._by_id:
            self._by_id = {p.id: p for p in self.corpus}
        try:
            return self._by_id[pid]
        except KeyError:
            raise KeyError(
                f"unknown passage id {pid!r} (corpus {self.name!r} has {len(self.corpus)} passages)"
            ) from None

    def summary(self) -> str:
        """One line for the log: sizes of corpus and splits."""
        return (
            f"{self.name}: {len(self.corpus):,} passages, {len(self.train):,} train / {len(self.eval):,} eval questions"
        )
