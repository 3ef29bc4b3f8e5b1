"""``ragdistill-report``: the command line over :func:`ragdistill.report.build.build_report`.

Plain argparse rather than Hydra: the report reads run dirs, it composes no experiment, and Hydra would
create a run dir of its own for every report.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence

from ragdistill.report.build import DEFAULT_BAR_METRIC, DEFAULT_GROUP_BY, REPORT_DIR, build_report
from ragdistill.report.significance import TESTS
from ragdistill.report.table import DEFAULT_METRICS, NOISY_KEYS

DESCRIPTION = """\
Compare finished runs: a table (one row per run; the config keys that differ between runs; the key
metrics), a recall@k figure of every run and a bar chart of one metric per teacher, written as report.md
and report.html with their PNGs. Run dirs are found recursively (folders holding metrics.json); failed or
unfinished runs are listed as skipped.
"""

EPILOG = f"""\
examples (options taking several values go after the PATHs):
  ragdistill-report multirun/2026-11-21/06-48-42_quickstart
  ragdistill-report outputs/ multirun/ --out reports/all
  ragdistill-report outputs/ --metrics 'test/gold/*' test/rag/em --group-by name
  ragdistill-report outputs/ --bar-metric test_fusion_rrf/gold/recall@5
  ragdistill-report outputs/untrained outputs/replug_lsr outputs/aar --significance

default metric columns (those present in some run):
{textwrap.fill(", ".join(DEFAULT_METRICS), width=100, initial_indent="  ", subsequent_indent="  ")}
config keys never shown: {", ".join(NOISY_KEYS)}
docs: docs/report.md
"""


def parser() -> argparse.ArgumentParser:
    """The command's arguments (also what ``--help`` prints)."""
    p = argparse.ArgumentParser(
        prog="ragdistill-report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run dir, multirun dir or any folder holding run dirs")
    p.add_argument(
        "--out", metavar="DIR", help=f"where to write the report (default: {REPORT_DIR}/ inside the first PATH)"
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="KEY",
        help="metric columns in order: keys or fnmatch patterns ('test/gold/*'); default: the list below",
    )
    p.add_argument(
        "--group-by",
        default=DEFAULT_GROUP_BY,
        metavar="KEY",
        help="config key that groups runs in the bar chart, e.g. name (default: auto, the teacher class where "
        "runs differ in it, else the first config key that differs)",
    )
    p.add_argument(
        "--bar-metric",
        default=DEFAULT_BAR_METRIC,
        metavar="KEY",
        help=f"metric averaged per group in the bar chart (default: {DEFAULT_BAR_METRIC})",
    )
    p.add_argument(
        "--ignore",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="more config keys (fnmatch patterns) to leave out of the table, e.g. 'callbacks.*'",
    )
    p.add_argument(
        "--significance",
        nargs="?",
        const="student",
        choices=sorted(TESTS),
        metavar="TEST",
        help="add paired tests between the runs over their test questions, from their runs/test.run files: "
        "student (paired t-test, the default) or fisher (randomization test)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report; a problem with the input ends the command with its message and status 2."""
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        files = build_report(
            args.paths,
            out_dir=args.out,
            metrics=args.metrics,
            group_by=args.group_by,
            bar_metric=args.bar_metric,
            ignore=args.ignore,
            significance=args.significance,
        )
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))  # exits with status 2
    sys.stdout.write(f"Report of {files.runs} runs ({files.skipped} skipped):\n  {files.html}\n  {files.markdown}\n")
    return 0
