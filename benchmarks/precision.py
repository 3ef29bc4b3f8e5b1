"""bf16 autocast vs float32 on CPU for the packaged MiniLM: encoding throughput, embedding agreement, train step.

Side by side in one process, on the same SQuAD paragraphs:

    python benchmarks/precision.py            # 640 paragraphs, 3 train steps of 64 passages each

Writes ``benchmarks/results/precision.md`` (``--out``) and prints it; the header names the CPU's bfloat16
support, which decides which way the result goes (see :mod:`ragdistill.runtime.precision`). The figures back
the ``precision`` defaults in ``conf/trainer/cpu.yaml`` and ``conf/evaluation/default.yaml``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ragdistill.data.squad import load_squad_open
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.runtime.precision import cpu_bf16_description, force_cpu_bf16
from ragdistill.utils.quiet import quiet_third_party

ROOT = Path(__file__).resolve().parents[1]


def train_step_seconds(model: BiEncoderModule, texts: list[str], bf16: bool, repeats: int) -> float:
    """Median wall time of one forward+backward pass over ``texts`` (a proxy for one training step)."""
    model.train()
    times = []
    for _ in range(repeats + 1):  # the first pass warms up the kernels and is dropped
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.encode_passages(texts).sum()
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=640)
    parser.add_argument("--step-passages", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="precision.md", help="file name under benchmarks/results/")
    args = parser.parse_args()
    quiet_third_party()
    texts = [p.text for p in load_squad_open(n_train=0, n_eval=0).corpus[: args.passages]]
    model = BiEncoderModule()

    encoded, seconds = {}, {}
    for precision in ("32-true", "bf16-mixed", "32-true", "bf16-mixed"):  # second round = warm timings
        start = time.perf_counter()
        with force_cpu_bf16():  # measure bf16 even on a CPU where the defaults would fall back to float32
            encoded[precision] = encode_texts(model, texts, "passage", EncodeSettings(precision=precision))
        seconds[precision] = time.perf_counter() - start
    cosine = (encoded["32-true"] * encoded["bf16-mixed"]).sum(axis=1)  # both L2-normalised
    step = {bf16: train_step_seconds(model, texts[: args.step_passages], bf16, args.repeats) for bf16 in (False, True)}

    lines = [
        f"MiniLM (packaged all-MiniLM-L6-v2), {args.passages} SQuAD train paragraphs, {torch.get_num_threads()} "
        f"threads, passage max length 256. CPU: {cpu_bf16_description()}.",
        "",
        "| | float32 | bf16 autocast | ratio |",
        "|---|---|---|---|",
        f"| encoding, passages/s | {args.passages / seconds['32-true']:.1f} | "
        f"{args.passages / seconds['bf16-mixed']:.1f} | {seconds['32-true'] / seconds['bf16-mixed']:.2f}× |",
        f"| forward+backward of {args.step_passages} passages, s | {step[False]:.2f} | {step[True]:.2f} | "
        f"{step[False] / step[True]:.2f}× |",
        "",
        f"Cosine between float32 and bf16 embeddings: mean {cosine.mean():.5f}, min {cosine.min():.5f}.",
        f"Top-1 neighbour agreement (each paragraph's nearest other paragraph): "
        f"{_neighbour_agreement(encoded['32-true'], encoded['bf16-mixed']):.3f}.",
    ]
    table = "\n".join(lines)
    out = ROOT / "benchmarks" / "results" / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(table)


def _neighbour_agreement(a: np.ndarray, b: np.ndarray) -> float:
    def nearest(x: np.ndarray) -> np.ndarray:
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return sims.argmax(axis=1)

    return float((nearest(a) == nearest(b)).mean())


if __name__ == "__main__":
    main()
