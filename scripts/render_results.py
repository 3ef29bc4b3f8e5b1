"""Regenerate every results table in README.md and docs/ from the files in benchmarks/results/.

A figure has one source: the results file a benchmark (or a run collected by hand) wrote. A page shows a
table of it between two markers, and this script rewrites what lies between them::

    <!-- generated from benchmarks/results/squad_open.md table 1 rows=1,2,4 cols=R@1;R@5 -->

    | ... the table, rewritten by this script ... |

    <!-- end generated -->

``table N`` is the N-th Markdown table of the file, ``code N`` its N-th fenced block (the paired t-test
tables of ``benchmarks/compare_retrievers.py``). ``rows=`` keeps those body rows (1-based), ``cols=`` those
columns by header (the first column always stays). Several sources joined by ``+`` make one table with the
first source's header. Running it with no new results changes nothing; ``--check`` says which page is
stale and exits 1 (``tests/test_docs.py`` runs it). ``docs/results/fidelity.md`` has its own generator,
``python benchmarks/fidelity.py --render``.

    python scripts/render_results.py           # rewrite the stale tables
    python scripts/render_results.py --check   # exit 1 if a page differs from what its sources give
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = re.compile(r"^<!-- generated from (?P<spec>.+?) -->\n", re.M)
END = "<!-- end generated -->"
PART = re.compile(r"^(?P<src>\S+) (?P<kind>table|code) (?P<n>\d+)(?: rows=(?P<rows>[\d,]+))?(?: cols=(?P<cols>.+))?$")


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text`` (outside fenced blocks), each as its lines."""
    tables: list[list[str]] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            current.append(line.rstrip())
            continue
        if current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _code_blocks(text: str) -> list[str]:
    """The fenced blocks of ``text`` whose info string is empty (tables printed as text)."""
    return re.findall(r"^```\n(.*?)^```$", text, re.M | re.S)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table_part(source: str, n: int, rows: str | None, cols: str | None, root: Path) -> tuple[list[str], list[str]]:
    tables = _tables((root / source).read_text())
    if not 1 <= n <= len(tables):
        raise ValueError(f"{source} has {len(tables)} table(s), not a table {n}")
    header, _, *body = tables[n - 1]
    names = _cells(header)
    keep = list(range(len(names)))
    if cols:
        wanted = [name.strip() for name in cols.split(";")]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{source} table {n} has no column {missing}: {names}")
        keep = [0, *(names.index(name) for name in wanted)]
    if rows:
        picked = [int(i) for i in rows.split(",")]
        if any(not 1 <= i <= len(body) for i in picked):
            raise ValueError(f"{source} table {n} has {len(body)} rows, not {picked}")
        body = [body[i - 1] for i in picked]
    return [_row([names[i] for i in keep])], [_row([_cells(line)[i] for i in keep]) for line in body]


def render_spec(spec: str, root: Path = ROOT) -> str:
    """The Markdown a marker's spec stands for."""
    header: list[str] = []
    body: list[str] = []
    for part in spec.split(" + "):
        match = PART.match(part.strip())
        if not match:
            raise ValueError(f"not a source: {part!r} (want 'benchmarks/results/<file>.md table|code N ...')")
        source, kind, n = match["src"], match["kind"], int(match["n"])
        if kind == "code":
            blocks = _code_blocks((root / source).read_text())
            if not 1 <= n <= len(blocks):
                raise ValueError(f"{source} has {len(blocks)} fenced block(s), not a block {n}")
            return "```text\n" + blocks[n - 1] + "```\n"
        part_header, part_body = _table_part(source, n, match["rows"], match["cols"], root)
        if not header:
            header = [*part_header, _row(["---"] * len(_cells(part_header[0])))]
        body += part_body
    return "\n".join([*header, *body]) + "\n"


def render_page(text: str, root: Path = ROOT) -> str:
    """``text`` with every generated block rewritten from its sources."""
    out: list[str] = []
    position = 0
    for match in BEGIN.finditer(text):
        if match.start() < position:
            continue
        end = text.find(END, match.end())
        if end < 0:
            raise ValueError(f"marker without '{END}': {match.group(0).strip()}")
        out += [text[position : match.end()], "\n", render_spec(match["spec"], root), "\n"]
        position = end
    out.append(text[position:])
    return "".join(out)


def stale(root: Path = ROOT) -> dict[Path, str]:
    """Every page whose generated blocks differ from their sources, with its regenerated text."""
    changed = {}
    for page in pages(root):
        text = page.read_text()
        new = render_page(text, root)
        if new != text:
            changed[page] = new
    return changed


def main() -> None:
    """Rewrite the stale pages, or with ``--check`` list them and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale; write nothing")
    args = parser.parse_args()
    changed = stale()
    for page, text in changed.items():
        print(f"{'stale' if args.check else 'rewrote'}: {page.relative_to(ROOT)}")
        if not args.check:
            page.write_text(text)
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
