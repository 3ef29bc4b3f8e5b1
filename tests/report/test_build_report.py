"""The cross-run report on fake run dirs: table columns and rows, figures, HTML, skipped runs, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ragdistill.report.build import build_report, choose_group_by, legend_labels
from ragdistill.report.runs import find_runs
from ragdistill.report.table import build_table, format_metric, format_value

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["05-00-00_gold_a", "06-00-00_gold_b", "07-00-00_replug"]


def runs_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table (the runs), cells stripped."""
    lines = [line for line in markdown.split("## Runs", 1)[1].splitlines() if line.startswith("|")]
    header, *rows = lines[0:1] + lines[2:]  # skip the |---| line
    cut = next((i for i, line in enumerate(rows) if not line.startswith("| [")), len(rows))  # the next table
    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in [header, *rows[:cut]]]
    return split[0], split[1:]


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000, path
    image = imread(path)  # decodes the whole file: a truncated PNG fails here
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert np.ptp(image[..., :3]) > 0  # not a blank canvas
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as opened:
        opened.verify()


def test_table_has_one_row_per_run_and_only_the_differing_keys(three_runs: Path, tmp_path: Path) -> None:
    files = build_report([three_runs], out_dir=tmp_path / "report")
    assert (files.runs, files.skipped) == (3, 0)
    header, rows = runs_table(files.markdown.read_text())

    config_columns = ["name", "retriever.optimizer.lr", "teacher._target_", "teacher.num_candidates", "loss._target_"]
    metric_columns = [
        "test/gold/recall@1",
        "test/gold/recall@5",
        "test/gold/recall@20",
        "test/gold/mrr@10",
        "test_bm25/gold/recall@1",
        "test_bm25/gold/recall@5",
        "test_bm25/gold/recall@20",
        "teacher/top1_gold",
        "runtime/fit_s",
        "runtime/teacher_s",
    ]
    assert header == ["run", *config_columns, *metric_columns]
    # shared keys, run-dir paths (by name or by value), tags and keys implied by a differing class are not columns
    for hidden in ("seed", "data.n_train", "paths.output_dir", "trainer.default_root_dir", "callbacks", "tags"):
        assert not any(column.startswith(hidden) for column in header), hidden
    assert "teacher.lm.path" not in header and "loss.tau_student" not in header

    assert [row[0] for row in rows] == [f"[{label}](<../outputs/2026-11-21/{label}>)" for label in LABELS]
    by_run = {label: dict(zip(header, row, strict=True)) for label, row in zip(LABELS, rows, strict=True)}
    gold_a, gold_b, replug = (by_run[label] for label in LABELS)
    assert (gold_a["name"], gold_a["retriever.optimizer.lr"], gold_b["retriever.optimizer.lr"]) == (
        "gold_a",
        "2e-05",
        "5e-05",
    )
    assert (gold_a["teacher._target_"], replug["teacher._target_"]) == ("GoldTeacher", "LMLikelihoodTeacher")
    assert (gold_a["loss._target_"], replug["loss._target_"]) == ("InfoNCELoss", "KLDistillLoss")
    assert (gold_a["teacher.num_candidates"], replug["teacher.num_candidates"]) == ("20", "10")
    # three decimals; seconds with one; a metric the run lacks as a dash; the column's best in bold
    assert gold_a["test/gold/recall@1"] == "0.612"
    assert gold_b["test/gold/recall@1"] == "**0.650**"
    assert gold_a["test/gold/mrr@10"] == "0.662"
    assert gold_a["runtime/fit_s"] == "**123.5**"
    assert (gold_a["teacher/top1_gold"], replug["teacher/top1_gold"]) == ("—", "0.878")
    assert gold_a["test_bm25/gold/recall@5"] == "0.850"  # equal in every run: nothing is best


def test_figures_are_valid_pngs_and_the_html_shows_them_and_every_run(three_runs: Path, tmp_path: Path) -> None:
    files = build_report([three_runs], out_dir=tmp_path / "report")
    assert files.recall_png == tmp_path / "report" / "recall_at_k.png"
    assert files.bar_png == tmp_path / "report" / "metric_by_group.png"
    assert_valid_png(files.recall_png)
    assert_valid_png(files.bar_png)

    html = files.html.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert '<img src="recall_at_k.png"' in html and '<img src="metric_by_group.png"' in html
    for label in LABELS:
        assert f'<a href="../outputs/2026-11-21/{label}">{label}</a>' in html
    assert html.count("<tr><td><a href=") == 3
    assert "<style>" in html and "<script" not in html and "http" not in html  # nothing fetched
    markdown = files.markdown.read_text()
    assert "![recall@k of every run](recall_at_k.png)" in markdown
    assert "(metric_by_group.png)" in markdown


def test_bar_chart_groups_runs_by_teacher_class(three_runs: Path, tmp_path: Path) -> None:
    files = build_report([three_runs], out_dir=tmp_path / "report")
    markdown = files.markdown.read_text()
    groups = markdown.split("## test/gold/recall@5 by teacher._target_", 1)[1]
    std = float(np.std([0.8, 0.82], ddof=1))
    assert f"| GoldTeacher | 2 | 0.810 | {std:.3f} |" in groups
    assert "| LMLikelihoodTeacher | 1 | 0.840 | — |" in groups

    by_name = build_report([three_runs], out_dir=tmp_path / "by_name", group_by="name", bar_metric="runtime/fit_s")
    groups = by_name.markdown.read_text().split("## runtime/fit_s by name", 1)[1]
    assert "| gold_a | 1 | 123.456 | — |" in groups and "| replug | 1 | 580.200 | — |" in groups


def test_chosen_metrics_keep_their_order_and_patterns_expand(three_runs: Path, tmp_path: Path) -> None:
    files = build_report([three_runs], out_dir=tmp_path / "r", metrics=["runtime/fit_s", "test/gold/recall@*"])
    header, _ = runs_table(files.markdown.read_text())
    metric_columns = header[-5:]
    assert metric_columns == [
        "runtime/fit_s",
        "test/gold/recall@1",
        "test/gold/recall@5",
        "test/gold/recall@20",
        "test/gold/recall@100",
    ]
    with pytest.raises(ValueError, match=r"metric 'test/rag/em' is in no run's metrics.json; available: .*recall@5"):
        build_report([three_runs], out_dir=tmp_path / "r", metrics=["test/rag/em"])


def test_multirun_dirs_are_found_recursively_in_natural_order(make_run, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "2026-11-21" / "06-48-42_quickstart"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for job in range(11):
        make_run(sweep / str(job), name="quickstart", lr=1e-5 * (job + 1))
    nested = sweep / "3" / "retriever" / "metrics.json"  # inside a run: not a run of its own
    nested.parent.mkdir()
    nested.write_text("{}")

    files = build_report([tmp_path / "multirun"])
    assert files.markdown == tmp_path / "multirun" / "report" / "report.md"  # the default --out
    assert (files.runs, files.skipped) == (11, 0)
    header, rows = runs_table(files.markdown.read_text())
    assert [row[0].split("]")[0].lstrip("[") for row in rows] == [str(job) for job in range(11)]
    assert header[1] == "retriever.optimizer.lr"  # the only differing key; "name" is shared

    again = build_report([tmp_path / "multirun"])  # the report folder itself is never read as a run
    assert again.runs == 11


def test_failed_and_corrupt_runs_are_listed_as_skipped(make_run, tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    make_run(root / "a_ok", name="ok")
    make_run(root / "b_corrupt", metrics='{"test/gold/recall@1": 0.5, "test/go', name="corrupt")
    make_run(root / "c_failed", metrics=None, name="failed")
    make_run(root / "d_list", metrics="[0.1, 0.2]", name="list")
    (root / "e_hydra_only" / ".hydra").mkdir(parents=True)  # a run that died right after Hydra started

    files = build_report([root], out_dir=tmp_path / "report")
    assert (files.runs, files.skipped) == (1, 4)
    markdown = files.markdown.read_text()
    _, rows = runs_table(markdown)
    assert len(rows) == 1 and rows[0][0].startswith("[a_ok]")
    skipped = markdown.split("## Skipped", 1)[1]
    assert re.search(r"- `b_corrupt`: metrics.json is not valid JSON \(.+\)", skipped)
    assert "- `c_failed`: no metrics.json: the run failed or is still running" in skipped
    assert "- `d_list`: metrics.json holds a list, not an object" in skipped
    assert "- `e_hydra_only`: no metrics.json" in skipped
    html = files.html.read_text()
    assert "<h2>Skipped</h2>" in html and "b_corrupt" in html and "not valid JSON" in html


def test_a_run_without_a_readable_config_still_gets_its_row(make_run, tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "a", lr=2e-5)
    b = make_run(tmp_path / "runs" / "b", lr=5e-5)
    (b / "resolved_config.yaml").unlink()  # falls back to .hydra/config.yaml
    c = make_run(tmp_path / "runs" / "c", lr=1e-4)
    (c / "resolved_config.yaml").write_text("retriever: [unclosed\n")

    files = build_report([tmp_path / "runs"], out_dir=tmp_path / "report")
    markdown = files.markdown.read_text()
    _, rows = runs_table(markdown)
    assert [row[1] for row in rows] == ["2e-05", "5e-05", "—"]
    notes = markdown.split("## Notes", 1)[1]
    assert "- b: config read from .hydra/config.yaml" in notes
    assert "- c: resolved_config.yaml is not valid YAML" in notes


def test_empty_input_is_a_clear_error(make_run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no finished run under .*empty: a run dir is a folder holding metrics.json"):
        build_report([tmp_path / "empty"])
    assert not (tmp_path / "empty" / "report").exists()

    make_run(tmp_path / "failed" / "x", metrics=None)
    with pytest.raises(ValueError, match=r"found only unfinished ones:\n  .*x: no metrics.json"):
        build_report([tmp_path / "failed"])
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        build_report([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="no path given"):
        build_report([])


def test_several_paths_are_merged_without_duplicates(three_runs: Path, tmp_path: Path) -> None:
    one = three_runs / "2026-11-21" / LABELS[0]
    files = build_report([three_runs, one, one / "metrics.json"], out_dir=tmp_path / "report")
    assert files.runs == 3


def test_cell_formatting() -> None:
    assert format_metric("test/gold/recall@5", 0.88449) == "0.884"
    assert format_metric("runtime/peak_rss_mb", 8040.94) == "8040.9"
    assert format_metric("test/gold/recall@5", None) == "—"
    assert format_value("ragdistill.teachers.gold.GoldTeacher", "teacher._target_") == "GoldTeacher"
    assert format_value(2e-5) == "2e-05" and format_value(0.05) == "0.05"
    assert (format_value(True), format_value(None), format_value([1, 5, 20])) == ("true", "null", "[1, 5, 20]")
    assert format_value({"a": [1, None]}) == "{a: [1, null]}"


def test_a_sweep_is_labelled_and_grouped_by_what_it_swept(tmp_path, make_run):
    """Job folders 0 and 1 of one multirun: the figure's legend and the bar groups name the swept lr."""
    sweep = tmp_path / "multirun" / "2026-12-07" / "10-00-00_sweep"
    for job, lr in enumerate((2e-5, 5e-5)):
        make_run(sweep / str(job), name="sweep", lr=lr)

    files = build_report([sweep], out_dir=tmp_path / "report")

    text = files.markdown.read_text()
    assert "by retriever.optimizer.lr" in text  # not one bar for the one teacher both jobs used
    runs, _ = find_runs([sweep])
    table = build_table(runs, ["test/gold/recall@5"], labels=["0", "1"])
    assert legend_labels(table) == ["optimizer.lr=2e-05", "optimizer.lr=5e-05"]
    assert choose_group_by(runs, table.config_keys) == "retriever.optimizer.lr"


def test_runs_that_differ_in_teacher_are_grouped_by_teacher(three_runs):
    runs, _ = find_runs([three_runs])
    table = build_table(runs, ["test/gold/recall@5"])
    assert choose_group_by(runs, table.config_keys) == "teacher._target_"


def test_each_evaluation_set_gets_its_headline_columns_after_the_retrievers(make_run, tmp_path: Path) -> None:
    sets = {"scifact/gold/ndcg@10": 0.61, "scifact/gold/recall@5": 0.7, "scifact/questions": 300.0}
    sets |= {"scifact_bm25/gold/ndcg@10": 0.66, "nq/answer/recall@5": 0.5, "nq/questions": 100.0}
    own = {"test/gold/recall@1": 0.6, "test/gold/mrr@10": 0.7, "test_bm25/gold/recall@1": 0.5, "test/questions": 60.0}
    make_run(tmp_path / "runs" / "a", metrics=own | sets, name="a")
    make_run(tmp_path / "runs" / "b", metrics=own, name="b")  # a run without the sets: its cells are empty
    header, rows = runs_table(build_report([tmp_path / "runs"], out_dir=tmp_path / "r").markdown.read_text())
    set_columns = [column for column in header if column.startswith(("scifact", "nq"))]
    assert set_columns == ["scifact/gold/recall@5", "scifact/gold/ndcg@10", "nq/answer/recall@5"]
    order = [header.index(key) for key in ("test/gold/mrr@10", "scifact/gold/recall@5", "test_bm25/gold/recall@1")]
    assert order == sorted(order)
    assert rows[0][header.index("scifact/gold/ndcg@10")].strip("*") == "0.610"
    assert rows[1][header.index("scifact/gold/ndcg@10")] == "—"
