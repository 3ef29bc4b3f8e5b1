"""The report's teacher-cache section: grouping runs by teacher/LM config, the estimated saving, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragdistill.report.build import build_report
from ragdistill.report.cache_savings import CacheRow, cache_rows, totals_sentence
from ragdistill.report.runs import find_runs


def rows_under(root: Path) -> list[CacheRow]:
    runs, skipped = find_runs([root])
    assert not skipped
    return cache_rows(runs)


def test_two_losses_sharing_a_teacher_are_one_row_priced_by_its_scored_shards(make_cached_run, tmp_path) -> None:
    make_cached_run(tmp_path / "runs" / "a_kl", scored=5, reused=0, scoring_s=50.0, loss="kl")
    make_cached_run(tmp_path / "runs" / "b_infonce", scored=1, reused=4, scoring_s=12.0, loss="infonce")

    [row] = rows_under(tmp_path / "runs")
    assert (row.teacher, row.runs, row.shards_scored, row.shards_reused) == ("LMLikelihoodTeacher", 2, 6, 4)
    assert row.scoring_s == pytest.approx(62.0)
    assert row.saved_s == pytest.approx(4 * 62.0 / 6)  # reused shards x the group's mean seconds per scored shard


def test_different_teachers_are_separate_rows_in_first_seen_order(make_cached_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a", scored=4, reused=0, scoring_s=20.0, teacher="lm_likelihood", target="answer")
    make_cached_run(root / "b", scored=2, reused=0, scoring_s=2.0, teacher="gold", loss="infonce")
    make_cached_run(root / "c", scored=3, reused=1, scoring_s=30.0, teacher="lm_likelihood", target="relevance")
    make_cached_run(root / "d", scored=0, reused=4, scoring_s=0.0, teacher="lm_likelihood", target="answer")

    assert rows_under(root) == [
        CacheRow("LMLikelihoodTeacher (teacher.target=answer)", 2, 4, 4, 20.0, 20.0),
        CacheRow("GoldTeacher", 1, 2, 0, 2.0, 0.0),
        CacheRow("LMLikelihoodTeacher (teacher.target=relevance)", 1, 3, 1, 30.0, 10.0),
    ]


def test_a_different_top_level_lm_is_a_different_group(make_cached_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a", scored=2, reused=0, scoring_s=8.0, lm="packaged:SmolLM2-135M-Instruct")
    make_cached_run(root / "b", scored=2, reused=0, scoring_s=80.0, lm="packaged:Qwen2.5-1.5B-Instruct")
    make_cached_run(root / "c", scored=0, reused=2, scoring_s=0.0, lm="packaged:Qwen2.5-1.5B-Instruct")

    assert rows_under(root) == [
        CacheRow("LMLikelihoodTeacher (lm.path=packaged:SmolLM2-135M-Instruct)", 1, 2, 0, 8.0, 0.0),
        CacheRow("LMLikelihoodTeacher (lm.path=packaged:Qwen2.5-1.5B-Instruct)", 2, 2, 2, 80.0, 80.0),
    ]


def test_labels_that_one_key_cannot_tell_apart_are_numbered(make_cached_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a", scored=1, reused=0, scoring_s=1.0, target="answer", num_candidates=10)
    make_cached_run(root / "b", scored=1, reused=0, scoring_s=1.0, target="relevance", num_candidates=10)
    make_cached_run(root / "c", scored=1, reused=0, scoring_s=1.0, target="answer", num_candidates=20)

    assert [row.teacher for row in rows_under(root)] == [
        "LMLikelihoodTeacher (teacher.target=answer)",
        "LMLikelihoodTeacher (teacher.target=relevance)",
        "LMLikelihoodTeacher (teacher.target=answer) #2",
    ]


def test_a_group_that_only_reused_has_no_price_and_stays_out_of_the_totals(make_cached_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a", scored=0, reused=5, scoring_s=0.0, teacher="gold", loss="infonce")
    make_cached_run(root / "b", scored=2, reused=2, scoring_s=10.0)

    only_reused, priced = rows_under(root)
    assert (only_reused.teacher, only_reused.shards_reused, only_reused.saved_s) == ("GoldTeacher", 5, None)
    assert priced.saved_s == pytest.approx(10.0)
    assert totals_sentence([only_reused, priced]) == (
        "Teacher scoring took 10.0 s; without the cache it would have taken about 20.0 s (50% saved)."
    )
    assert totals_sentence([only_reused]).startswith("No group scored a shard itself")


def test_an_older_run_without_scoring_seconds_counts_its_shards_but_does_not_price_them(
    make_cached_run, tmp_path
) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a_old", scored=10, reused=0, scoring_s=None)
    make_cached_run(root / "b_new", scored=2, reused=8, scoring_s=6.0)

    [row] = rows_under(root)
    assert (row.shards_scored, row.shards_reused, row.scoring_s) == (12, 8, 6.0)
    assert row.saved_s == pytest.approx(8 * 6.0 / 2)  # priced by b_new's 2 measured shards only

    markdown = build_report([root], out_dir=tmp_path / "report").markdown.read_text()
    assert "- a_old: no runtime/teacher_scoring_s (an older run)" in markdown.split("## Notes", 1)[1]


def test_runs_without_cache_metrics_are_left_out(make_cached_run, make_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_run(root / "a_eval", name="eval")  # no teacher/cache_* metrics, like an evaluation-only run
    make_cached_run(root / "b", scored=3, reused=0, scoring_s=9.0)

    assert rows_under(root) == [CacheRow("LMLikelihoodTeacher", 1, 3, 0, 9.0, 0.0)]

    files = build_report([root / "a_eval"], out_dir=tmp_path / "eval_report")
    assert cache_rows(find_runs([root / "a_eval"])[0]) == []
    assert "Teacher cache" not in files.markdown.read_text()
    assert "Teacher cache" not in files.html.read_text()


def test_report_md_and_html_show_the_section_after_the_bar_chart(make_cached_run, make_run, tmp_path) -> None:
    root = tmp_path / "runs"
    make_cached_run(root / "a_kl", scored=5, reused=0, scoring_s=50.0, loss="kl")
    make_cached_run(root / "b_infonce", scored=1, reused=4, scoring_s=12.0, loss="infonce")
    make_cached_run(root / "c_gold", scored=0, reused=3, scoring_s=0.0, teacher="gold", loss="infonce")
    make_run(root / "d_eval", name="eval")
    sentence = "Teacher scoring took 62.0 s; without the cache it would have taken about 103.3 s (40% saved)."

    files = build_report([root], out_dir=tmp_path / "report")
    markdown = files.markdown.read_text()
    assert markdown.index("## test/gold/recall@5 by teacher._target_") < markdown.index("## Teacher cache")
    section = markdown.split("## Teacher cache", 1)[1].split("\n## ", 1)[0]
    assert section.strip().splitlines() == [
        "| teacher | runs | shards scored | shards reused | scoring time (s) | saved (s) |",
        "|---|---|---|---|---|---|",
        "| LMLikelihoodTeacher | 2 | 6 | 4 | 62.0 | 41.3 |",
        "| GoldTeacher | 1 | 0 | 3 | 0.0 | — |",
        "",
        sentence,
    ]

    html = files.html.read_text()
    assert html.index("metric_by_group.png") < html.index("<h2>Teacher cache</h2>")
    section = html.split("<h2>Teacher cache</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<th>teacher</th><th>runs</th><th>shards scored</th>" in section
    assert (
        '<tr><td>LMLikelihoodTeacher</td><td class="num">2</td><td class="num">6</td><td class="num">4</td>'
        '<td class="num">62.0</td><td class="num">41.3</td></tr>'
    ) in section
    assert '<tr><td>GoldTeacher</td><td class="num">1</td><td class="num">0</td><td class="num">3</td>' in section
    assert '<td class="num">0.0</td><td class="num">—</td></tr>' in section
    assert f'<p class="note">{sentence}</p>' in section
