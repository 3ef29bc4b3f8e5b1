"""Paired significance tests between finished runs, from the TREC run files each evaluation writes.

Two retrievers' figures differ on every evaluation; whether the difference is more than the questions'
noise is a paired test over the same questions. Every run writes its ranking (``runs/test.run``) and the
judgements it was scored against (``runs/gold.qrels``), so the test needs no model, index or re-encoding:
ranx's ``compare`` reads them (paired two-sided t-test by default, or Fisher's randomization test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragdistill.report.runs import Run

METRICS = ("recall@1", "recall@5", "recall@20", "mrr@10")
"""The columns of the significance table."""

Test = Literal["student", "fisher"]
TESTS: dict[str, str] = {"student": "paired t-test", "fisher": "randomization test"}

MAX_P = 0.05


@dataclass(frozen=True)
class Significance:
    """A paired comparison of runs, for the report.

    Attributes:
        table: ranx's text table: one row per run (a letter each), a superscript letter marking a significant
            improvement (p < :data:`MAX_P`) over the run with that letter.
        test: Which test (:data:`TESTS`).
        questions: How many questions the runs were compared on.
        prefix: The ranking compared (``test``, or an evaluation set's name).
    """

    table: str
    test: str
    questions: int
    prefix: str

    def note(self) -> str:
        """One sentence saying how to read the table."""
        return (
            f"{TESTS[self.test].capitalize()} over the same {self.questions} questions ({self.prefix} rankings, "
            f"gold passages); a superscript letter marks a significant improvement (p < {MAX_P}) over the run "
            "with that letter."
        )


def run_files(run_dir: Path, prefix: str = "test") -> tuple[Path, Path]:
    """A run's ranking and qrels files for ``prefix``; refuses a run that has none, saying why it may not."""
    qrels_name = "gold.qrels" if prefix == "test" else f"{prefix}_gold.qrels"
    ranking, qrels = run_dir / "runs" / f"{prefix}.run", run_dir / "runs" / qrels_name
    for path in (ranking, qrels):
        if not path.is_file():
            raise ValueError(
                f"{run_dir} has no {path.relative_to(run_dir)}: paired tests read the run files an evaluation writes "
                "(runs evaluated before run files existed, with evaluate=false, or with whitespace in ids have none)"
            )
    return ranking, qrels


def compare_runs(
    runs: Sequence[Run], labels: Sequence[str], test: Test = "student", prefix: str = "test"
) -> Significance:
    """Compare ``runs`` pairwise on their ``prefix`` rankings over the same questions.

    Raises:
        ValueError: A run without run files, or runs judged on other questions (not a paired comparison).
    """
    from ranx import Qrels, compare
    from ranx import Run as RanxRun

    if test not in TESTS:
        raise ValueError(f"--significance must be one of {sorted(TESTS)}, got {test!r}")
    if len(runs) < 2:
        raise ValueError("a paired comparison needs at least two runs")
    qrels: Qrels | None = None
    first: dict[str, dict[str, int]] | None = None
    rankings = []
    for run, label in zip(runs, labels, strict=True):
        ranking_file, qrels_file = run_files(run.path, prefix)
        loaded = Qrels.from_file(str(qrels_file), kind="trec")
        judged = loaded.to_dict()
        if first is None:
            qrels, first = loaded, judged
        elif judged != first:
            raise ValueError(
                f"{label} was judged on other questions or passages than {labels[0]}: not a paired comparison"
            )
        ranking = RanxRun.from_file(str(ranking_file), kind="trec")
        ranking.name = label
        rankings.append(ranking)
    report = compare(qrels, runs=rankings, metrics=list(METRICS), stat_test=test, max_p=MAX_P)
    return Significance(report.to_table(), test, len(first or {}), prefix)
