"""Render a :class:`~ragdistill.report.document.Report` as Markdown (GitHub-flavoured tables)."""

from __future__ import annotations

from ragdistill.report.cache_savings import CACHE_HEADER, cache_cells, totals_sentence
from ragdistill.report.document import Report, columns_note


def to_markdown(report: Report) -> str:
    """The whole report as one Markdown document; images are referenced by file name, next to it."""
    table = report.table
    lines = [
        "# ragdistill report",
        "",
        f"{len(table.rows)} runs from {', '.join(f'`{source}`' for source in report.sources)}"
        f" ({len(report.skipped)} skipped), written {report.written}.",
        "",
        "## Runs",
        "",
        _table(
            ["run", *table.config_keys, *table.metric_keys],
            [
                [f"[{_escape(label)}](<{link}>)", *(_escape(cell) for cell in row[: len(table.config_keys)])]
                + [f"**{cell}**" if j in best else cell for j, cell in enumerate(row[len(table.config_keys) :])]
                for label, link, row, best in zip(table.labels, report.links, table.rows, table.best, strict=True)
            ],
        ),
        "",
        columns_note(report, lambda text: f"`{text}`", "**Bold**: the best value of a metric column."),
    ]
    if report.recall_png:
        lines += ["", "## Recall@k (test, gold paragraph)", "", f"![recall@k of every run]({report.recall_png})"]
    if report.bar_png:
        lines += [
            "",
            f"## {report.bar_metric} by {report.group_by}",
            "",
            f"![{report.bar_metric} by {report.group_by}]({report.bar_png})",
            "",
            _table(
                [report.group_by, "runs", f"mean {report.bar_metric}", "std"],
                [
                    [_escape(row.group), str(row.runs), f"{row.mean:.3f}", "—" if row.std is None else f"{row.std:.3f}"]
                    for row in report.groups
                ],
            ),
        ]
    if report.significance:
        paired = report.significance
        lines += ["", "## Paired significance", "", paired.note(), "", "```", paired.table, "```"]
    if report.cache:
        lines += [
            "",
            "## Teacher cache",
            "",
            _table(list(CACHE_HEADER), [[_escape(cell) for cell in cache_cells(row)] for row in report.cache]),
            "",
            totals_sentence(report.cache),
        ]
    if report.skipped:
        lines += ["", "## Skipped", ""] + [f"- `{label}`: {_escape(reason)}" for label, reason in report.skipped]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {_escape(note)}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_escape(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _escape(text: str) -> str:
    """Keep a cell one cell: a ``|`` would split it, a newline would end the row."""
    return text.replace("|", r"\|").replace("\n", " ")
