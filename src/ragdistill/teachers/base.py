"""The small interface every teacher implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from pytorch_lightning.callbacks import Callback

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal


class Teacher(ABC):
    """Turn each training question's first-stage candidates into a :class:`TeacherSignal`.

    Teachers are chosen by the ``teacher=`` config group (one module and one YAML file each), never by
    branching on a mode string. A teacher may drop a question it cannot judge (e.g. no gold label); it
    logs how many it dropped.
    """

    scores_on_every_rank: bool = False
    """Whether every rank of a distributed run may run :meth:`score` together, before ``fit``.

    True when scoring is model passes through ``run_predict`` (which splits them over the ranks) and pure
    computation: the pipeline then starts the ranks before scoring. False (the safe default) when scoring
    also does work that must happen once per run: API calls, a model's own ``fit``, files written as it goes.
    """

    @property
    def marks_positives(self) -> bool:
        """Whether the signals mark positives (gold, AAR, G2R), which contrastive losses need; False by default.

        A teacher that only grades candidates trains with a loss that learns scores (KL, ListMLE, ...); the
        pipeline refuses a contrastive loss for it before any LM work.
        """
        return False

    @abstractmethod
    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """Return one signal per question the teacher could judge, in the order of ``questions``."""

    def metrics(self) -> dict[str, float]:
        """Figures about the last scoring (e.g. ``teacher/passages``) for metrics.json; none by default."""
        return {}

    def quality(self, signals: list[TeacherSignal]) -> dict[str, float]:
        """This teacher's own quality figures (``teacher/*``) over its signals, beside the shared ones; none by default.

        The figures every teacher gets (top-1 gold, entropy, ...) come from
        :func:`ragdistill.evaluation.teacher_quality.teacher_quality`; a method with indicators of its own (the
        attention teacher's answer and question lifts) returns them here and logs its own warnings, so
        evaluation never imports a teacher's module.
        """
        return {}

    def training_callbacks(self, data: RetrievalData) -> list[Callback]:
        """Callbacks the teacher's recipe needs during training (e.g. AAR's hard-negative refresh); none by default."""
        return []

    def cache_identity(self) -> dict[str, str]:
        """What identifies this teacher's models beyond its config (e.g. the LM's weights), for the signal cache."""
        lm = getattr(self, "lm", None)
        return {"lm": lm.fingerprint()} if lm is not None else {}


@dataclass
class Derivation:
    """What a :class:`DerivedTeacher` makes of its source's signals.

    Attributes:
        signals: One signal per question it could judge, in question order.
        training_passages: Passages it created that only training reads (G2R's generated units); the
            caller registers them with the data, so no index and no evaluation sees them.
        corpus_passages: Passages it created that join the searched corpus (G2R with ``index_generated``).
    """

    signals: list[TeacherSignal]
    training_passages: list[Passage] = field(default_factory=list)
    corpus_passages: list[Passage] = field(default_factory=list)

    def register_passages(self, data: RetrievalData) -> None:
        """Make the created passages readable through ``data`` (training-only ones) or searchable (corpus ones)."""
        if self.training_passages:
            data.add_training_passages(self.training_passages)
        if self.corpus_passages:
            data.add_corpus_passages(self.corpus_passages)


class DerivedTeacher(Teacher):
    """A teacher built on another teacher's signals (AAR's top-N positives, G2R's units, the intermediate ranker).

    The source's scoring is cached under the source's own config, so a derived teacher and a run of its
    source alone (``teacher=lm_likelihood``), or two derived teachers with different settings, share one
    scoring. :meth:`derive` may itself be expensive (G2R generates text, the intermediate teacher trains a
    ranker): it caches its own work under its own key, and it never edits the data it is given: passages
    it creates come back in its :class:`Derivation` for the caller to register.

    Subclasses set :attr:`source` and implement :meth:`derive`; the config key of the source is ``source``.
    """

    source: Teacher

    def source_questions(self, questions: list[Question]) -> list[Question]:
        """The questions the source scores (the expensive step); all by default.

        A prefix of the training questions keeps the source's cache shards aligned with a full run's, so a
        smaller budget (the intermediate teacher's ``llm_questions``) reuses them.
        """
        return questions

    @abstractmethod
    def derive(
        self,
        signals: list[TeacherSignal],
        questions: list[Question],
        candidates: dict[str, RankedList],
        data: RetrievalData,
    ) -> Derivation:
        """Turn the source's signals (over :meth:`source_questions`) into this teacher's, in question order."""

    def score(
        self, questions: list[Question], candidates: dict[str, RankedList], data: RetrievalData
    ) -> list[TeacherSignal]:
        """Score with the source, derive, and register any passages the derivation created with ``data``."""
        derived = self.derive(
            self.source.score(self.source_questions(questions), candidates, data), questions, candidates, data
        )
        derived.register_passages(data)
        return derived.signals

    def metrics(self) -> dict[str, float]:
        """The source teacher's throughput figures."""
        return self.source.metrics()

    def cache_identity(self) -> dict[str, str]:
        """The source's models identify the (cached) source signals."""
        return self.source.cache_identity()
