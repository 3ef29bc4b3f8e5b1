"""SQuAD-open baselines side by side: BM25, the untrained MiniLM, MiniLM trained with teacher=gold, and fusions.

Runs two real commands (one ``ragdistill-eval`` of the untrained backbone, one ``ragdistill-train``) into
fixed run dirs, then writes one Markdown table from their ``metrics.json`` files:

    python benchmarks/squad_open.py                      # full corpus, 1,000 dev questions (~32 min on 2 cores)
    python benchmarks/squad_open.py --train-questions 500 --corpus-size 5000   # a quick look

The table goes to ``benchmarks/results/squad_open.md`` and to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

ROWS = [
    ("BM25 (bm25s)", "untrained", "test_bm25"),
    ("MiniLM, untrained", "untrained", "test"),
    ("MiniLM, untrained + BM25 (RRF)", "untrained", "test_fusion_rrf"),
    ("MiniLM, teacher=gold", "gold", "test"),
    ("MiniLM, teacher=gold + BM25 (RRF)", "gold", "test_fusion_rrf"),
]
COLUMNS = ["gold/recall@1", "gold/recall@5", "gold/recall@20", "gold/recall@100", "gold/mrr@10", "answer/recall@5"]
HEADERS = ["R@1", "R@5", "R@20", "R@100", "MRR@10", "answer hit@5"]


def run(command: list[str]) -> float:
    """Run a command, streaming its output; return its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-questions", type=int, default=3000)
    parser.add_argument("--eval-questions", type=int, default=1000)
    parser.add_argument("--corpus-size", default="null", help="null = full corpus")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_squad_open")
    parser.add_argument("--skip-existing", action="store_true", help="reuse run dirs that already hold metrics.json")
    args = parser.parse_args()

    data = [f"data.n_eval={args.eval_questions}", f"data.corpus_size={args.corpus_size}"]
    commands = {
        "untrained": [str(BIN / "ragdistill-eval"), "name=bench_untrained", *data],
        "gold": [
            str(BIN / "ragdistill-train"),
            "experiment=gold_squad",
            f"data.n_train={args.train_questions}",
            *data,
        ],
    }
    wall = {}
    for name, command in commands.items():
        run_dir = args.out / name
        if args.skip_existing and (run_dir / "metrics.json").exists():
            continue
        wall[name] = run([*command, f"hydra.run.dir={run_dir}"])
    metrics = {name: json.loads((args.out / name / "metrics.json").read_text()) for name in commands}

    lines = [
        f"SQuAD-open, {args.eval_questions} dev questions, corpus "
        f"{'full (20,958 paragraphs)' if args.corpus_size == 'null' else args.corpus_size + ' paragraphs'}; "
        f"gold trained on {int(metrics['gold']['train/questions'])} questions "
        f"(+ {args.train_questions - int(metrics['gold']['train/questions'])} held out for validation).",
        "",
        "| system | " + " | ".join(HEADERS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for label, source, prefix in ROWS:
        values = [f"{metrics[source][f'{prefix}/{c}']:.3f}" for c in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    gold, untrained = metrics["gold"], metrics["untrained"]
    lines += [
        "",
        f"Trained vs untrained MiniLM, gold R@1: {gold['test/gold/recall@1']:.3f} vs "
        f"{untrained['test/gold/recall@1']:.3f} ({gold['test/gold/recall@1'] / untrained['test/gold/recall@1']:.2f}×); "
        f"R@5 {gold['test/gold/recall@5']:.3f} vs {untrained['test/gold/recall@5']:.3f}.",
        f"Time on this machine: training run {gold['runtime/total_s']:.0f} s in all "
        f"(fit {gold['runtime/fit_s']:.0f} s, evaluate {gold['runtime/evaluate_s']:.0f} s), "
        f"peak RSS {gold['runtime/peak_rss_mb']:.0f} MB; evaluation of the untrained model "
        f"{untrained['runtime/total_s']:.0f} s.",
    ]
    table = "\n".join(lines)
    out = ROOT / "benchmarks" / "results" / "squad_open.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
