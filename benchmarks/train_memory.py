"""What one retriever training step costs in time and memory, per attention path, side by side.

Each variant runs in its own process (so its peak RSS is its own): the packaged MiniLM, 32 SQuAD-open
questions and 64 of their paragraphs (a gold paragraph and a BM25 negative each, truncated at 256 tokens,
as the default recipe batches them), bf16 autocast, an in-batch contrastive loss, forward + backward:

- ``sdpa``: PyTorch's fused attention throughout (what transformers loads by default);
- ``eager``: eager attention while training with attention dropout (``use_training_attention``, the
  default since this benchmark);
- ``checkpointing``: ``retriever.gradient_checkpointing=true`` on top of the default.

    python benchmarks/train_memory.py            # ~3 min on 2 cores
    python benchmarks/train_memory.py --steps 5

Writes ``benchmarks/results/train_memory.md``: median seconds per step after one warm-up step, peak RSS,
and both as ratios to ``sdpa`` measured in the same run (variants alternated over ``--rounds``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("sdpa", "eager", "checkpointing")


def child(variant: str, steps: int) -> dict[str, float]:
    """Run ``steps`` training steps in this process; return seconds per step and the peak RSS."""
    import torch

    from ragdistill.candidates.bm25 import BM25Candidates
    from ragdistill.data.fixture import load_fixture
    from ragdistill.retriever.bi_encoder_module import BiEncoderModule

    torch.manual_seed(0)
    data = load_fixture()
    questions = data.train[:32]
    negatives = BM25Candidates(k=2).fit(data.corpus).retrieve(questions)
    passages = []
    for question in questions:
        gold = question.gold_ids[0]
        negative = next(pid for pid in negatives[question.id].ids if pid != gold)
        passages += [data.passage(gold).text, data.passage(negative).text]
    module = BiEncoderModule(
        gradient_checkpointing=variant == "checkpointing", cache_dir=str(ROOT / ".cache/ragdistill")
    )
    module.use_training_attention(variant != "sdpa")  # what Lightning's on_train_start does
    seconds = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = module.encode_queries([x.text for x in questions])  # [32, D]
            p = module.encode_passages(passages)  # [64, D]
        scores = (q.float() @ p.float().T) / 0.05  # [32, 64]
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(0, 64, 2))
        loss.backward()
        module.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s_per_step": statistics.median(seconds[1:]), "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds over the variants")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):  # alternated, so a slow spell of the machine hits every variant alike
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--steps", str(args.steps)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(variant, runs[variant][-1], flush=True)
    rows = {
        variant: {
            "s_per_step": statistics.median(r["s_per_step"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        }
        for variant, results in runs.items()
    }
    base = rows["sdpa"]
    lines = [
        "# One retriever training step: time and memory per attention path",
        "",
        f"Command: `python benchmarks/train_memory.py --steps {args.steps} --rounds {args.rounds}` (each variant "
        "in its own process, the variants alternated; MiniLM, 32 questions × 2 passages of up to 256 tokens, bf16 "
        "autocast, forward + backward). s / step: the median over rounds of each process's median step; peak "
        "RSS: the largest over rounds.",
        "",
        "| variant | s / step | × sdpa | peak RSS (MB) | × sdpa |",
        "|---|---|---|---|---|",
    ]
    for variant, row in rows.items():
        lines.append(
            f"| {variant} | {row['s_per_step']:.2f} | {row['s_per_step'] / base['s_per_step']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {row['peak_rss_mb'] / base['peak_rss_mb']:.2f} |"
        )
    lines += [
        "",
        "Peak RSS is the whole process (Python, torch, the model, one step). `eager` is the default training",
        "path; `checkpointing` is `retriever.gradient_checkpointing=true`.",
    ]
    out = ROOT / "benchmarks" / "results" / "train_memory.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
