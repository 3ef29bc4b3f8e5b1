"""Where and when a benchmark measured: the header line every results file carries (CONTRIBUTING)."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measured_on() -> str:
    """``2026-12-07, commit abc1234, 2 CPUs``: the date, the checkout's commit and the CPU count."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return f"{datetime.date.today().isoformat()}, commit {commit.strip() or 'unknown'}, {os.cpu_count()} CPUs"
