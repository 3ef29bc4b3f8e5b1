"""Peak memory of the attention teacher as K grows: output-token rows only, never a T×T map per layer.

Each K runs in a fresh subprocess (peak RSS is per process) scoring the same SQuAD-open training
questions with the packaged SmolLM2-135M-Instruct reader, one question per batch:

    python benchmarks/attention_memory.py     # K = 10, 20, 30, 4 questions each (K=40+ can exceed the 8k window)

For comparison it prints what ``output_attentions=True`` would hold for the longest prompt: every layer's
``[heads, T, T]`` float32 map. Writes ``benchmarks/results/attention_memory.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(k: int, questions: int) -> dict[str, float]:
    """Score ``questions`` at K=``k`` in this process; return time, tokens and peak RSS."""
    from ragdistill.candidates.bm25 import BM25Candidates
    from ragdistill.data.squad import load_squad_open
    from ragdistill.models.lm import LanguageModel
    from ragdistill.teachers.attention import AttentionTeacher
    from ragdistill.utils.quiet import quiet_third_party

    quiet_third_party()
    data = load_squad_open(n_train=questions, n_eval=0, corpus_size=5000)
    candidates = BM25Candidates(k=k).fit(data.corpus).retrieve(data.train)
    lm = LanguageModel(cache_dir=str(ROOT / ".cache" / "ragdistill"))
    teacher = AttentionTeacher(lm, num_candidates=k, max_batch_size=1)
    longest = max(
        len(
            teacher.builder()
            .build(0, [data.passage(p) for p in candidates[q.id].ids[:k]], q.text, q.answers[0])
            .context_ids
        )
        for q in data.train
    )
    start = time.perf_counter()
    teacher.score(data.train, candidates, data)
    config = lm.model.config
    full_maps_gb = config.num_hidden_layers * config.num_attention_heads * longest**2 * 4 / 1e9
    return {
        "k": k,
        "tokens": longest,
        "seconds_per_question": (time.perf_counter() - start) / questions,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "full_maps_gb": full_maps_gb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.questions)))
        return
    rows = []
    for k in args.ks:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(k), "--questions", str(args.questions)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            f"| {k} | {result['tokens']:,} | {result['peak_rss_gb']:.2f} | {result['full_maps_gb']:.1f} | "
            f"{result['seconds_per_question']:.1f} |"
        )
    report = "\n".join(
        [
            "# Attention teacher: peak memory against K (SmolLM2-135M-Instruct reader, CPU, bf16 autocast)",
            "",
            f"Command: `python benchmarks/attention_memory.py --ks {' '.join(map(str, args.ks))} "
            f"--questions {args.questions}` (one question per batch; each K in a fresh process).",
            "",
            "| K | longest prompt (tokens) | peak RSS of the process (GB) | all layers' T×T maps would need (GB) "
            "| s / question |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Peak RSS includes Python, torch, the data set and the float32 LM (~0.5 GB of weights). The last-but-one",
            "column is what `output_attentions=True` would keep for one question (30 layers × 9 heads × T² float32).",
        ]
    )
    (ROOT / "benchmarks" / "results" / "attention_memory.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
