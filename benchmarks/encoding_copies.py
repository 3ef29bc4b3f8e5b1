"""What an int8 evaluation pays for its quantised towers: a copy per ``encode_texts`` call vs one per block.

An evaluation encodes three text sets with the same settings: the corpus, the test questions and the
validation questions. Each ``encode_texts`` call makes its own encoding copy of the towers (with
``quantize=int8``: a deep copy plus dynamic quantisation); ``encoding_copies()`` makes it once for every call
inside its block, which is what ``evaluate_retrieval`` now does. Same packaged MiniLM, same SQuAD-open texts,
the two arms alternated (A, B, A, B, ...) so background load hits both alike; an arm's time is its best
round. The vectors of the two arms are checked to be identical.

    python benchmarks/encoding_copies.py      # 100 passages, 50 + 20 questions, 7 rounds: the copies' share is large

Writes ``benchmarks/results/encoding_copies.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from teacher_setup import ROOT
from timing import timed

from ragdistill.data.squad import load_squad_open
from ragdistill.retriever import encode as encode_module
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts, encoding_copies
from ragdistill.utils.quiet import quiet_third_party

OUT = ROOT / "benchmarks" / "results" / "encoding_copies.md"


def encode_three(retriever: BiEncoderModule, sets: list[tuple[list[str], str]], settings: EncodeSettings) -> list:
    """The three encodings of one evaluation, each call making its own copies."""
    return [encode_texts(retriever, texts, kind, settings) for texts, kind in sets]


def encode_three_in_one_block(
    retriever: BiEncoderModule, sets: list[tuple[list[str], str]], settings: EncodeSettings
) -> list:
    """The same three encodings inside one ``encoding_copies()`` block."""
    with encoding_copies(retriever, settings):
        return encode_three(retriever, sets, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--validation", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    quiet_third_party()
    logging.basicConfig(level=logging.WARNING)
    data = load_squad_open(n_train=args.validation, n_eval=args.questions, corpus_size=args.passages)
    sets = [
        ([p.text for p in data.corpus], "passage"),
        ([q.text for q in data.eval], "query"),
        ([q.text for q in data.train], "query"),
    ]
    retriever = BiEncoderModule(cache_dir=str(ROOT / ".cache" / "ragdistill")).eval()
    settings = EncodeSettings(accelerator="cpu", precision="bf16-mixed", progress=False, quantize="int8")
    quantisations = 0
    quantize = encode_module.quantize_int8

    def counted(module: torch.nn.Module) -> torch.nn.Module:
        nonlocal quantisations
        quantisations += 1
        return quantize(module)

    encode_module.quantize_int8 = counted  # type: ignore[assignment]
    arms = {"a copy per call": encode_three, "one copy per block": encode_three_in_one_block}
    times: dict[str, list[float]] = {name: [] for name in arms}
    counts: dict[str, int] = {}
    vectors: dict[str, list] = {}
    _, quantise_s = timed(quantize, retriever.passage_encoder)
    encode_three_in_one_block(retriever, sets, settings)  # warm-up
    for _ in range(args.repeats):
        for name, arm in arms.items():
            before = quantisations
            vectors[name], seconds = timed(arm, retriever, sets, settings)
            times[name].append(seconds)
            counts[name] = quantisations - before
    first, second = vectors.values()
    identical = all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    best = {name: min(values) for name, values in times.items()}
    per_call, per_block = best.values()
    sizes = f"{len(sets[0][0])} passages, {len(sets[1][0])} test + {len(sets[2][0])} validation questions"
    lines = [
        "# int8 evaluation: encoding copies per call vs per block",
        "",
        f"`{' '.join(['python', *sys.argv])}` — packaged all-MiniLM-L6-v2 (shared towers), {sizes}, "
        f"`quantize=int8`, bf16-mixed, {torch.get_num_threads()} threads, best of {args.repeats} alternated rounds.",
        "",
        "| arm | quantisations per evaluation | seconds (best) | all rounds |",
        "|---|---|---|---|",
        *(
            f"| {name} | {counts[name]} | {best[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |"
            for name in arms
        ),
        "",
        f"One quantisation of the tower (deep copy + `quantize_dynamic`): {quantise_s:.2f} s. "
        f"One copy per block is {per_call / per_block:.2f}x the speed of a copy per call "
        f"({per_call - per_block:.2f} s saved per evaluation); vectors identical: {identical}.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if not identical:
        raise SystemExit("the two arms' vectors differ")


if __name__ == "__main__":
    main()
