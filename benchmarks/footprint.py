"""Peak memory and wall time of the fixture run and the quickstart, side by side in one session.

Each command runs in a fresh process; its peak RSS is the high-water mark of that process and its children
(``RUSAGE_CHILDREN`` of a wrapper that runs nothing else). ``--before <dir>`` also runs each default
command from another checkout (e.g. a ``git worktree`` of an older commit, through ``PYTHONPATH``), so a
change is measured against its predecessor on the same machine, in the same session.

    python benchmarks/footprint.py                                   # ~20 min on 2 cores
    python benchmarks/footprint.py --before /path/to/old/checkout    # adds the "before" rows
    python benchmarks/footprint.py --only fixture

Writes ``benchmarks/results/footprint.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUNS = {
    "fixture": ["data=fixture"],
    "quickstart": ["experiment=quickstart"],
}
VARIANTS = {"default": [], "gradient checkpointing": ["retriever.gradient_checkpointing=true"]}
_WRAPPER = (
    "import resource, subprocess, sys, json, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
    "print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t, "
    "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
)


def measure(overrides: list[str], source: Path | None) -> dict[str, float]:
    """Run ``ragdistill-train`` with ``overrides`` into a scratch dir; its wall time and peak RSS."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            str(BIN / "ragdistill-train"),
            *overrides,
            f"hydra.run.dir={scratch}/run",
            f"paths.cache_dir={ROOT / '.cache' / 'ragdistill'}",
        ]
        out = subprocess.run([sys.executable, "-c", _WRAPPER, *command], env=env, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(overrides)} failed with exit status {result['rc']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the earlier code to run the defaults from")
    parser.add_argument("--only", choices=sorted(RUNS), nargs="+", default=sorted(RUNS))
    args = parser.parse_args()
    rows = []
    for run in args.only:
        variants = [("before", [], args.before)] if args.before else []
        variants += [(name, extra, None) for name, extra in VARIANTS.items()]
        for name, extra, source in variants:
            started = time.strftime("%H:%M")
            result = measure(RUNS[run] + extra, source)
            rows.append({"run": run, "variant": name, **result})
            print(started, run, name, result, flush=True)
    lines = [
        "# Footprint: peak memory and wall time of the fixture run and the quickstart",
        "",
        f"Command: `python benchmarks/footprint.py{' --before <older checkout>' if args.before else ''}` "
        f"(one session, {os.cpu_count()} CPUs; the teacher cache was warm, so no run scored a teacher).",
        "",
        "| run | variant | wall (s) | × default | peak RSS (MB) | × default |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(r for r in rows if r["run"] == row["run"] and r["variant"] == "default")
        lines.append(
            f"| `ragdistill-train {' '.join(RUNS[row['run']])}` | {row['variant']} | {row['wall_s']:.0f} | "
            f"{row['wall_s'] / base['wall_s']:.2f} | {row['peak_rss_mb']:.0f} | "
            f"{row['peak_rss_mb'] / base['peak_rss_mb']:.2f} |"
        )
    lines += [
        "",
        "before: the code before eager training attention (SDPA in training passes); default: eager attention",
        "while training; gradient checkpointing: `retriever.gradient_checkpointing=true` on top of the default.",
    ]
    out = ROOT / "benchmarks" / "results" / "footprint.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
