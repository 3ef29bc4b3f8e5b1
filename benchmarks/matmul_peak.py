"""Distance to the limit: this CPU's measured matmul peak, and how much of it corpus encoding reaches.

Times square matrix products (2048², the size the performance issue quotes) in float32 and bfloat16 with
torch's own threads, best of several repeats, and sets the achieved rate of corpus encoding (from
``benchmarks/results/scaling.json``, written by ``benchmarks/scaling.py``) against the bf16 peak it runs at:

    python benchmarks/matmul_peak.py

Writes ``benchmarks/results/matmul_peak.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from teacher_setup import ROOT, publish


def peak_gflops(dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best GFLOP/s of ``size``² @ ``size``² products in ``dtype`` (2·n³ floating-point operations each)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    fp32 = peak_gflops(torch.float32, args.size, args.repeats)
    bf16 = peak_gflops(torch.bfloat16, args.size, args.repeats)
    scaling = json.loads((ROOT / "benchmarks" / "results" / "scaling.json").read_text())
    encode = max(scaling["corpus"], key=lambda row: row["passages"])
    achieved = encode["encode_gflops"]
    report = "\n".join(
        [
            "# Distance to the limit: matmul peak of this CPU",
            "",
            f"Command: `python benchmarks/matmul_peak.py --size {args.size} --repeats {args.repeats}` "
            f"({torch.get_num_threads()} threads; best of {args.repeats} products of {args.size}² matrices).",
            "",
            "| | GFLOP/s |",
            "|---|---|",
            f"| matmul peak, float32 | {fp32:.0f} |",
            f"| matmul peak, bfloat16 | {bf16:.0f} |",
            f"| corpus encoding, bf16 autocast ({encode['passages']:,} passages, scaling.json) | {achieved:.0f} "
            f"({100 * achieved / bf16:.0f}% of the bf16 peak, {100 * achieved / fp32:.0f}% of the fp32 peak) |",
            "",
            "Encoding's rate counts 2 × MiniLM's non-embedding parameters per token. MiniLM's matrices are small",
            "(384 × 1536 at most) and a batch's sequences are short, so its products run below the 2048² peak;",
            "the rest of a layer (layer norm, GELU, softmax, the attention's own products) is memory-bound.",
        ]
    )
    publish(report, "matmul_peak.md")


if __name__ == "__main__":
    main()
