"""Render a :class:`~ragdistill.report.document.Report` as one HTML file with inline CSS.

The images stay separate PNG files referenced by relative name, so the folder can be moved, zipped or
served as is and the HTML stays small; no script, no external stylesheet, nothing fetched.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from ragdistill.report.cache_savings import CACHE_HEADER, cache_cells, totals_sentence
from ragdistill.report.document import Report, columns_note

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 2rem auto; max-width: 1400px; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
.meta, .note { color: #59636e; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; text-align: left; font-size: 12px; max-width: 9rem; }
th.cfg { background: #ddf4ff; }
td.num { text-align: right; white-space: nowrap; }
td.cfg { background: #f5fbff; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
td.best { font-weight: 700; background: #dafbe1; }
tbody tr:hover td { background: #fff8c5; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: 12px; }
code { background: #f6f8fa; padding: 0 .25rem; border-radius: 4px; }
li { margin: .2rem 0; }
"""


def to_html(report: Report) -> str:
    """The whole report as one HTML document; images are referenced by file name, next to it."""
    sources = ", ".join(f"<code>{escape(source)}</code>" for source in report.sources)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ragdistill report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>ragdistill report</h1>",
        f'<p class="meta">{len(report.table.rows)} runs from {sources} ({len(report.skipped)} skipped),'
        f" written {escape(report.written)}.</p>",
        "<h2>Runs</h2>",
        _runs_table(report),
        f'<p class="note">{columns_note(report, _code, "Green: the best value of a metric column.")}</p>',
    ]
    if report.recall_png:
        parts += [
            "<h2>Recall@k (test, gold paragraph)</h2>",
            _figure(report.recall_png, "Gold-paragraph recall@k of every run on its test questions."),
        ]
    if report.bar_png:
        title = f"{report.bar_metric} by {report.group_by}"
        parts += [
            f"<h2>{escape(title)}</h2>",
            _figure(report.bar_png, f"Mean {title}; error bars: ±1 standard deviation over a group's runs."),
            _groups_table(report),
        ]
    if report.significance:
        paired = report.significance
        parts += [
            "<h2>Paired significance</h2>",
            f'<p class="note">{escape(paired.note())}</p>',
            f'<div class="scroll"><pre>{escape(paired.table)}</pre></div>',
        ]
    if report.cache:
        parts += [
            "<h2>Teacher cache</h2>",
            _cache_table(report),
            f'<p class="note">{escape(totals_sentence(report.cache))}</p>',
        ]
    if report.skipped:
        parts += ["<h2>Skipped</h2>", "<ul>"]
        parts += [f"<li><code>{escape(label)}</code>: {escape(reason)}</li>" for label, reason in report.skipped]
        parts.append("</ul>")
    if report.notes:
        parts += ["<h2>Notes</h2>", "<ul>", *(f"<li>{escape(note)}</li>" for note in report.notes), "</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _runs_table(report: Report) -> str:
    table = report.table
    n_config = len(table.config_keys)
    head = ["<th>run</th>"]
    head += [f'<th class="cfg">{_breakable(key)}</th>' for key in table.config_keys]
    head += [f"<th>{_breakable(key)}</th>" for key in table.metric_keys]
    body = []
    for label, link, row, best in zip(table.labels, report.links, table.rows, table.best, strict=True):
        cells = [f'<td><a href="{escape(quote(link))}">{escape(label)}</a></td>']
        cells += [f'<td class="cfg">{escape(cell)}</td>' for cell in row[:n_config]]
        cells += [
            f'<td class="num{" best" if j in best else ""}">{escape(cell)}</td>'
            for j, cell in enumerate(row[n_config:])
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _groups_table(report: Report) -> str:
    head = f"<tr><th>{escape(report.group_by)}</th><th>runs</th><th>mean</th><th>std</th></tr>"
    rows = [
        f'<tr><td>{escape(row.group)}</td><td class="num">{row.runs}</td><td class="num">{row.mean:.3f}</td>'
        f'<td class="num">{"—" if row.std is None else f"{row.std:.3f}"}</td></tr>'
        for row in report.groups
    ]
    return "<table><thead>" + head + "</thead><tbody>" + "".join(rows) + "</tbody></table>"


def _cache_table(report: Report) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in CACHE_HEADER)
    rows = []
    for row in report.cache:
        teacher, *numbers = cache_cells(row)
        cells = f"<td>{escape(teacher)}</td>" + "".join(f'<td class="num">{escape(cell)}</td>' for cell in numbers)
        rows.append(f"<tr>{cells}</tr>")
    return "<table><thead><tr>" + head + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"


def _figure(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{escape(quote(src))}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def _breakable(key: str) -> str:
    """A long dotted or slashed key that may wrap after its separators in a narrow header cell."""
    return escape(key).replace("/", "/<wbr>").replace(".", ".<wbr>")
