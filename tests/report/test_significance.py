"""``ragdistill-report --significance``: paired tests read from the runs' TREC files, marks where they belong."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragdistill.evaluation.run_files import write_run_files
from ragdistill.report.build import build_report
from ragdistill.report.runs import load_run
from ragdistill.report.significance import compare_runs

QUESTIONS = [f"q{i}" for i in range(30)]
GOLD = {q: {f"{q}-gold": 1} for q in QUESTIONS}


def _ranking(gold_rank: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each question's gold passage at the given rank among ten passages (scores descend with rank)."""
    run = {}
    for q, rank in gold_rank.items():
        others = [f"{q}-other{j}" for j in range(9)]
        order = [*others[: rank - 1], f"{q}-gold", *others[rank - 1 :]]
        run[q] = {pid: 10.0 - i for i, pid in enumerate(order)}
    return run


def _run_dir(make_run, root: Path, name: str, gold_rank: dict[str, int], gold=GOLD) -> Path:
    run_dir = make_run(root / name, name=name)
    write_run_files(run_dir / "runs", {"test": _ranking(gold_rank)}, {"gold": gold})
    return run_dir


def _row(table: str, letter: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"{letter} "))
    return line.split()


def test_a_retriever_that_ranks_gold_first_everywhere_is_marked_better(make_run, tmp_path: Path) -> None:
    worse = _run_dir(make_run, tmp_path, "worse", {q: 5 for q in QUESTIONS})
    better = _run_dir(make_run, tmp_path, "better", {q: 1 for q in QUESTIONS})
    paired = compare_runs([load_run(worse), load_run(better)], ["worse", "better"])
    assert paired.questions == 30
    recall_1 = _row(paired.table, "b")[2]  # columns: letter, name, Recall@1, Recall@5, ...
    assert recall_1 == "1.000ᵃ"  # significantly better than run a
    assert "ᵇ" not in paired.table  # run a is better than b nowhere
    assert _row(paired.table, "a")[2] == "0.000"


def test_a_difference_that_cancels_out_is_not_marked(make_run, tmp_path: Path) -> None:
    half = {q: (1 if i % 2 else 2) for i, q in enumerate(QUESTIONS)}
    other_half = {q: (2 if i % 2 else 1) for i, q in enumerate(QUESTIONS)}
    runs = [_run_dir(make_run, tmp_path, "a", half), _run_dir(make_run, tmp_path, "b", other_half)]
    paired = compare_runs([load_run(r) for r in runs], ["a", "b"], test="fisher")
    assert "ᵃ" not in paired.table and "ᵇ" not in paired.table
    assert paired.note().startswith("Randomization test over the same 30 questions")


def test_runs_on_other_questions_or_without_run_files_are_refused(make_run, tmp_path: Path) -> None:
    base = _run_dir(make_run, tmp_path, "base", {q: 1 for q in QUESTIONS})
    fewer = _run_dir(make_run, tmp_path, "fewer", {q: 1 for q in QUESTIONS[:-1]}, {q: GOLD[q] for q in QUESTIONS[:-1]})
    with pytest.raises(ValueError, match="fewer was judged on other questions or passages than base"):
        compare_runs([load_run(base), load_run(fewer)], ["base", "fewer"])
    bare = make_run(tmp_path / "bare", name="bare")
    with pytest.raises(ValueError, match=r"bare has no runs/test\.run: paired tests read the run files"):
        compare_runs([load_run(base), load_run(bare)], ["base", "bare"])


def test_the_report_shows_the_table_in_markdown_and_html(make_run, tmp_path: Path) -> None:
    _run_dir(make_run, tmp_path / "runs", "1_worse", {q: 5 for q in QUESTIONS})  # rows in natural order
    _run_dir(make_run, tmp_path / "runs", "2_better", {q: 1 for q in QUESTIONS})
    files = build_report([tmp_path / "runs"], out_dir=tmp_path / "report", significance="student")
    markdown, html = files.markdown.read_text(), files.html.read_text()
    assert "## Paired significance" in markdown and "1.000ᵃ" in markdown
    assert "<h2>Paired significance</h2>" in html and "1.000ᵃ" in html
    plain = build_report([tmp_path / "runs"], out_dir=tmp_path / "plain")
    assert "Paired significance" not in plain.markdown.read_text()
