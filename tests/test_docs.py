"""The documentation: generated tables are current, every relative link resolves, the README stays a guide."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import render_results  # noqa: E402

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(<?([^)\s>]+)>?\)")
SKIP_DIRS = {".venv", "outputs", "multirun", "site", ".git", "node_modules"}


def markdown_files() -> list[Path]:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in files if not SKIP_DIRS & set(Path(f).parts) and (ROOT / f).exists()]


def _without_code(text: str) -> str:
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_regenerating_the_results_tables_changes_nothing():
    assert render_results.stale() == {}, "run `python scripts/render_results.py`"


def test_the_fidelity_page_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "benchmarks" / "fidelity.py")
    assert spec and spec.loader
    fidelity = importlib.util.module_from_spec(spec)
    sys.modules["fidelity"] = fidelity  # its dataclasses look their module up
    try:
        spec.loader.exec_module(fidelity)
    finally:
        del sys.modules["fidelity"]
    assert fidelity.render() == (ROOT / "docs" / "results" / "fidelity.md").read_text()


def test_the_renderer_rewrites_a_stale_block_and_selects_rows_and_columns(tmp_path: Path):
    (tmp_path / "r.md").write_text("# r\n\n| a | b | c |\n|---|---|---|\n| x | 1 | 2 |\n| y | 3 | 4 |\n")
    page = "<!-- generated from r.md table 1 rows=2 cols=c -->\n| old |\n<!-- end generated -->\n"
    new = render_results.render_page(page, tmp_path)
    table = "| a | c |\n| --- | --- |\n| y | 4 |\n"
    assert new == f"<!-- generated from r.md table 1 rows=2 cols=c -->\n\n{table}\n<!-- end generated -->\n"
    assert render_results.render_page(new, tmp_path) == new
    with pytest.raises(ValueError, match="no column"):
        render_results.render_page(page.replace("cols=c", "cols=z"), tmp_path)


def test_every_results_table_in_docs_is_generated():
    for page in sorted((ROOT / "docs" / "results").glob("*.md")):
        if page.name == "fidelity.md":
            continue
        text = page.read_text()
        outside = re.sub(r"<!-- generated from .*?<!-- end generated -->", "", text, flags=re.S)
        assert not re.search(r"^\|.*\|\s*$", _without_code(outside), re.M), f"{page.name}: a table not generated"


def test_no_relative_link_in_any_markdown_file_is_broken():
    broken = []
    files = markdown_files()
    assert ROOT / "README.md" in files and len(files) > 10
    for md in files:
        for match in LINK.finditer(_without_code(md.read_text())):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if path and not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert broken == []


def test_nothing_cites_files_outside_the_repository():
    pattern = re.compile(r"\.\./shared|SOURCES\.md|DESIGN\.md")
    offenders = []
    for top in ("src/ragdistill", "conf", "tests", "benchmarks", "scripts", "docs"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix not in {".py", ".md", ".yaml", ".yml", ".txt"} or path == Path(__file__):
                continue
            if path.is_file() and pattern.search(path.read_text(errors="ignore")):
                offenders.append(str(path.relative_to(ROOT)))
    for name in ("README.md", "CONTRIBUTING.md", "Makefile", "mkdocs.yml"):
        if pattern.search((ROOT / name).read_text()):
            offenders.append(name)
    assert offenders == []


def test_the_readme_is_a_guide_with_one_results_table():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12_500
    assert text.count("<!-- generated from ") == 1
    for command in (
        "make quickstart",
        "make test",
        "pip install -e '.[dev]'",
        "--no-deps",
        "+sweep=",
        "hparams_search=",
        "ragdistill-report",
    ):
        assert command in text, command
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^quickstart:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "mkdocs build --strict" in makefile


def test_every_docs_page_is_in_the_mkdocs_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, page
