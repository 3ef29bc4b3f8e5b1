"""Approximate indexes against exact search on real embeddings: build time, search time, size, recall.

The corpus vectors come from a finished run's flat index (the untrained MiniLM over the full 20,958-paragraph
SQuAD-open corpus by default); the 1,000 dev questions of that run are encoded again with the same model.
For flat, HNSW and IVF-PQ (``conf/index/*.yaml`` settings, plus other ``nprobe``/``efSearch`` values) it
measures build seconds, search milliseconds per query (top-100), the serialised size, the overlap of each
index's top-10 / top-100 with exact search, and gold-paragraph R@5 / R@20:

    python benchmarks/index_kinds.py                                   # outputs/bench_squad_open/untrained
    python benchmarks/index_kinds.py --run outputs/<date>/<time>_gold_squad --retriever <that run>/retriever

Writes ``benchmarks/results/index_kinds.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from teacher_setup import ROOT, publish

from ragdistill.data.squad import load_squad_open
from ragdistill.evaluation.metrics import evaluate_run
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.utils.quiet import quiet_third_party

DEPTH = 100
VARIANTS: dict[str, dict[str, Any]] = {
    "flat (exact)": {"kind": "flat"},
    "HNSW M=32, efSearch=128 (default)": {"kind": "hnsw", "hnsw_m": 32, "hnsw_ef_search": 128},
    "HNSW M=32, efSearch=32": {"kind": "hnsw", "hnsw_m": 32, "hnsw_ef_search": 32},
    "IVF-PQ nlist=1024, pq_m=16, nprobe=32 (default)": {"kind": "ivfpq", "pq_m": 16, "nprobe": 32},
    "IVF-PQ pq_m=16, nprobe=8": {"kind": "ivfpq", "pq_m": 16, "nprobe": 8},
    "IVF-PQ pq_m=48, nprobe=32": {"kind": "ivfpq", "pq_m": 48, "nprobe": 32},
}


def overlap(found: list[list[str]], exact: list[list[str]], k: int) -> float:
    """Mean fraction of exact search's top-k that an index also returns in its top-k."""
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "outputs" / "bench_squad_open" / "untrained")
    parser.add_argument("--retriever", default="packaged:all-MiniLM-L6-v2")
    args = parser.parse_args()
    quiet_third_party()
    config = json.loads((args.run / "metrics.json").read_text())  # a finished run, or fail here
    raw = faiss.read_index(str(args.run / "index" / "index.faiss"))
    vectors = raw.reconstruct_n(0, raw.ntotal)
    ids = json.loads((args.run / "index" / "ids.json").read_text())
    data = load_squad_open(n_train=0, n_eval=int(config["test/questions"]), seed=42)
    if [p.id for p in data.corpus] != ids:
        raise SystemExit(f"{args.run} was not indexed over the SQuAD-open corpus this script loads")
    settings = EncodeSettings(batch_size=64, accelerator="cpu", progress=False)
    queries = encode_texts(BiEncoderModule(args.retriever).eval(), [q.text for q in data.eval], "query", settings)

    rows, exact = [], None
    for name, params in VARIANTS.items():
        index = FaissIndex(metric="ip", **params)
        start = time.perf_counter()
        index.build(vectors, ids)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        scores, found = index.search(queries, DEPTH)
        search_ms = 1000 * (time.perf_counter() - start) / len(queries)
        exact = exact or found
        size_mb = sum(len(faiss.serialize_index(part)) for part in index._parts) / 2**20
        run = {
            q.id: {pid: float(s) for pid, s in zip(hits, row, strict=True)}
            for q, hits, row in zip(data.eval, found, scores, strict=True)
        }
        metrics = evaluate_run(run, data.eval, data.corpus, (5, 20))
        rows.append(
            f"| {name} | {build_s:.2f} | {search_ms:.3f} | {size_mb:.1f} | {overlap(found, exact, 10):.3f} | "
            f"{overlap(found, exact, DEPTH):.3f} | {metrics['gold/recall@5']:.3f} | {metrics['gold/recall@20']:.3f} |"
        )
        print(rows[-1])
    shown = args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run
    report = "\n".join(
        [
            "# Index kinds on real embeddings: approximate vs exact",
            "",
            f"Command: `python benchmarks/index_kinds.py --run {shown}`"
            f" ({len(ids):,} passages × {vectors.shape[1]} dims from that run's flat index; its {len(queries):,} dev"
            f" questions re-encoded with `{args.retriever}`; top-{DEPTH}; {torch.get_num_threads()} CPU threads).",
            "",
            "| index | build (s) | search (ms/query) | size (MB) | top-10 overlap with exact | top-100 overlap "
            "| gold R@5 | gold R@20 |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    publish(report, "index_kinds.md")


if __name__ == "__main__":
    main()
