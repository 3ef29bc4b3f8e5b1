"""``ragdistill-report`` as a user runs it: the installed script and ``python -m`` in real subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=ENV, timeout=120)


@pytest.fixture(scope="module")
def script() -> str:
    path = shutil.which("ragdistill-report", path=str(BIN))
    if path is None:
        pytest.skip("ragdistill-report is not installed: pip install -e . --no-deps")
    return path


def test_script_writes_the_report(script: str, three_runs: Path, tmp_path: Path) -> None:
    done = _run(script, str(three_runs), "--out", "rep", "--metrics", "test/gold/recall@5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Report of 3 runs (0 skipped)" in done.stdout
    for name in ("report.md", "report.html", "recall_at_k.png", "metric_by_group.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    assert "| test/gold/recall@5 |" in (tmp_path / "rep" / "report.md").read_text()


def test_python_m_uses_report_dir_in_the_first_path_by_default(three_runs: Path, tmp_path: Path) -> None:
    done = _run(sys.executable, "-m", "ragdistill.report", str(three_runs), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (three_runs / "report" / "report.html").exists()


def test_empty_dir_fails_with_the_reason(script: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _run(script, "empty", cwd=tmp_path)
    assert done.returncode == 2
    assert "ragdistill-report: error: no finished run under empty" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_the_options(script: str, tmp_path: Path) -> None:
    done = _run(script, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for option in ("PATH", "--out", "--metrics", "--group-by", "--bar-metric", "--ignore", "test/gold/recall@1"):
        assert option in done.stdout, option
