"""Corpus encoding, side by side in one process: our encoder vs ``SentenceTransformer.encode``.

The same packaged all-MiniLM-L6-v2 and the same SQuAD-open paragraphs, four ways: sentence-transformers'
default (float32), sentence-transformers inside ``torch.autocast("cpu", bfloat16)``, and our
``encode_texts`` (length-sorted batches through Lightning ``predict``) in float32 and in bf16-mixed:

    python benchmarks/encoding_vs_st.py                      # 2,000 paragraphs
    python benchmarks/encoding_vs_st.py --passages 20958     # the whole corpus

Each is run once untimed (warm-up) on 64 paragraphs, then timed on all of them. Reports passages/s, the
ratio to sentence-transformers' fp32 default and to its bf16 run, and the mean / minimum cosine of each
embedding to sentence-transformers' fp32 one. Writes ``benchmarks/results/encoding_vs_st.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from teacher_setup import ROOT

from ragdistill.data.squad import load_squad_open
from ragdistill.models.locate import resolve_model_path
from ragdistill.retriever.bi_encoder import BiEncoder
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.utils.quiet import quiet_third_party

BATCH = 64


def timed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[np.ndarray, float]:
    """Warm ``encode`` up on a few texts, then return its vectors of ``texts`` and the seconds they took."""
    encode(texts[:BATCH])
    start = time.perf_counter()
    vectors = encode(texts)
    return vectors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    quiet_third_party()
    data = load_squad_open(n_train=0, n_eval=0, corpus_size=args.passages, seed=args.seed)
    texts = [p.text for p in data.corpus][: args.passages]
    st = SentenceTransformer(resolve_model_path("packaged:all-MiniLM-L6-v2"), device="cpu")
    ours = BiEncoder().eval()

    def st_fp32(batch: list[str]) -> np.ndarray:
        return st.encode(batch, batch_size=BATCH, normalize_embeddings=True)

    def st_bf16(batch: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            vectors = st.encode(batch, batch_size=BATCH, normalize_embeddings=True, convert_to_tensor=True)
        return vectors.float().numpy()

    def ours_with(precision: str) -> Callable[[list[str]], np.ndarray]:
        settings = EncodeSettings(batch_size=BATCH, accelerator="cpu", precision=precision, progress=False)
        return lambda batch: encode_texts(ours, batch, "passage", settings)

    runs = {
        "sentence-transformers, fp32 (its default)": st_fp32,
        "sentence-transformers, bf16 autocast": st_bf16,
        "ragdistill encode_texts, fp32 (`precision=32-true`)": ours_with("32-true"),
        "ragdistill encode_texts, bf16 (`precision=bf16-mixed`, the default)": ours_with("bf16-mixed"),
    }
    results = {name: timed(encode, texts) for name, encode in runs.items()}
    reference = results["sentence-transformers, fp32 (its default)"][0]
    st_fp32_rate = len(texts) / results["sentence-transformers, fp32 (its default)"][1]
    st_bf16_rate = len(texts) / results["sentence-transformers, bf16 autocast"][1]
    rows = []
    for name, (vectors, seconds) in results.items():
        rate = len(texts) / seconds
        cosine = np.sum(vectors * reference, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        )
        rows.append(
            f"| {name} | {seconds:.1f} | {rate:.1f} | {rate / st_fp32_rate:.2f}× | {rate / st_bf16_rate:.2f}× | "
            f"{cosine.mean():.5f} / {cosine.min():.5f} |"
        )
    report = "\n".join(
        [
            "# Corpus encoding: ragdistill vs sentence-transformers (same model, same texts, one process)",
            "",
            f"Command: `python benchmarks/encoding_vs_st.py --passages {args.passages}` ({len(texts):,} SQuAD-open "
            f"paragraphs, packaged all-MiniLM-L6-v2, batch {BATCH}, max length 256, "
            f"{torch.get_num_threads()} CPU threads).",
            "",
            "| encoder | seconds | passages/s | vs ST fp32 | vs ST bf16 | cosine to ST fp32 (mean / min) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    (ROOT / "benchmarks" / "results" / "encoding_vs_st.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
