"""How each stage's cost grows: corpus encoding and indexing with corpus size, LM-teacher scoring with K.

The measured basis of the internet-scale estimate in ``docs/scaling.md``. On this machine, in one process:

- corpus encoding (packaged MiniLM, bf16 autocast, length-bucketed batches) of 1,000 / 5,000 / 20,958
  SQuAD-open paragraphs: seconds, passages/s, achieved GFLOP/s (2 × non-embedding parameters × tokens);
- faiss flat and HNSW (M=32) build and the search of 1,000 queries at each corpus size;
- LM-teacher scoring (packaged SmolLM2-135M, bf16) of the same questions at K = 5, 10, 20: answer
  likelihood (one passage per sequence) and attention (all K passages in one sequence), seconds per
  question and peak RSS growth;
- the growth exponent b of each stage (time ∝ size^b, least squares in log-log): 1 is linear.

    python benchmarks/scaling.py                      # ~10 min on 2 cores
    python benchmarks/scaling.py --questions 8 --sizes 1000 5000

Writes ``benchmarks/results/scaling.md``, ``scaling.png`` (log-log curves, extrapolated to a 21M-passage
corpus) and ``scaling.json`` (the raw figures; ``--from-json`` redraws table and plot from it).
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch
from teacher_setup import ROOT, load_lm
from timing import timed

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.squad import load_squad_open
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.teachers.attention import AttentionTeacher
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher
from ragdistill.utils.quiet import quiet_third_party

FULL = 20958
"""Paragraphs of the full SQuAD-open corpus."""

WIKIPEDIA = 21_015_324
"""Passages of the DPR Wikipedia corpus (100-word passages), the usual internet-scale target."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def growth(sizes: list[float], seconds: list[float]) -> float:
    """The exponent b of ``seconds ∝ size^b`` (least squares on logs); nan with fewer than two sizes."""
    if len(sizes) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


def encoder_flops_per_token(encoder: BiEncoderModule) -> float:
    """2 × the parameters a token passes through (embedding tables excluded: a lookup, not a matmul)."""
    body = sum(p.numel() for name, p in encoder.passage_encoder.named_parameters() if "embeddings" not in name)
    return 2.0 * body


def corpus_rows(sizes: list[int], queries: int, seed: int) -> list[dict[str, Any]]:
    """Encode and index ``size`` paragraphs for each size; search ``queries`` dev questions in each index."""
    encoder = BiEncoderModule().eval()
    settings = EncodeSettings(batch_size=64, accelerator="cpu", precision="bf16-mixed", progress=False)
    flops_per_token = encoder_flops_per_token(encoder)
    encode_texts(encoder, ["warm-up: the first pass pays one-off costs"] * 64, "passage", settings)
    rows = []
    for size in sizes:
        data = load_squad_open(n_train=0, n_eval=queries, corpus_size=None if size >= FULL else size, seed=seed)
        texts = [p.text for p in data.corpus]
        limit = encoder.hparams["passage_max_length"]
        tokens = sum(min(len(ids), limit) for ids in encoder.tokenizer(texts)["input_ids"])
        vectors, encode_s = timed(encode_texts, encoder, texts, "passage", settings)
        queries_vec = encode_texts(encoder, [q.text for q in data.eval], "query", settings)
        ids = [p.id for p in data.corpus]
        row: dict[str, Any] = {
            "passages": len(texts),
            "tokens": tokens,
            "encode_s": encode_s,
            "passages_per_s": len(texts) / encode_s,
            "encode_gflops": flops_per_token * tokens / encode_s / 1e9,
        }
        for kind, options in (("flat", {}), ("hnsw", {"hnsw_m": 32, "hnsw_ef_search": 128})):
            index = FaissIndex(kind=kind, metric="ip", **options)
            _, build_s = timed(index.build, vectors, ids)
            _, search_s = timed(index.search, queries_vec, 100)
            row[f"{kind}_build_s"], row[f"{kind}_search_ms_per_query"] = build_s, 1000 * search_s / queries
        row["peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
        print(json.dumps(row))
    return rows


def teacher_rows(questions: int, ks: list[int], seed: int) -> list[dict[str, Any]]:
    """Score ``questions`` training questions' BM25 top-K with both LM teachers at each K."""
    data = load_squad_open(n_train=questions, n_eval=0, corpus_size=5000, seed=seed)
    candidates = BM25Candidates(k=max(ks)).fit(data.corpus).retrieve(data.train)
    lm = load_lm()
    warm_up = LMLikelihoodTeacher(lm, num_candidates=2, accelerator="cpu")  # loads the weights, untimed
    warm_up.score(data.train[:1], candidates, data)
    rows = []
    for name, make in (("answer likelihood", LMLikelihoodTeacher), ("attention", AttentionTeacher)):
        for k in ks:
            teacher = make(lm, num_candidates=k, accelerator="cpu")
            before = peak_rss_mb()
            signals, seconds = timed(teacher.score, data.train, candidates, data)
            rows.append(
                {
                    "teacher": name,
                    "k": k,
                    "questions": len(signals),
                    "s_per_question": seconds / len(signals),
                    "passages_per_s": len(signals) * k / seconds,
                    "peak_rss_growth_mb": peak_rss_mb() - before,
                }
            )
            print(json.dumps(rows[-1]))
    return rows


# Assumptions of the projection (stated in its table's notes; nothing here was measured on a GPU)
H100_BF16_FLOPS = 989e12
"""An H100 SXM's dense bf16 peak."""
ENCODE_UTILISATION = 0.25
"""Share of that peak a small encoder reaches (short sequences, small matmuls)."""
LM_UTILISATION = 0.40
"""Share of that peak a 7B LM's forward pass reaches."""
LM_7B_PARAMS = 6.5e9
"""Non-embedding parameters of a 7B LLM (Llama-2-7B)."""
SMOLLM2_PARAMS = 1.05e8
"""Non-embedding parameters of the packaged SmolLM2-135M."""
LM_READ_TOKENS = 200
"""Tokens of one teacher read: a ~150-token passage, the question, the answer and the prompt."""
TEACHER_K = 10
"""Candidates per question in the projection's teacher rows (the LM-teacher recipes' K)."""
EMBEDDING_DIM = 384
"""MiniLM's embedding size: float32 vectors of 1,536 bytes."""
MACHINE_GIB = 24
"""This machine's memory."""


def projection(corpus: list[dict[str, Any]], teachers: list[dict[str, Any]]) -> list[str]:
    """Table lines: each stage at 21M passages and a 7B teacher, extrapolated from the measured rows."""
    largest = max(corpus, key=lambda r: r["passages"])
    ratio = WIKIPEDIA / largest["passages"]
    tokens_per_passage = largest["tokens"] / largest["passages"]
    flop_per_token = largest["encode_gflops"] * 1e9 * largest["encode_s"] / largest["tokens"]
    encode_flop = WIKIPEDIA * tokens_per_passage * flop_per_token
    encode_days = WIKIPEDIA / largest["passages_per_s"] / 86400
    encode_gpu_min = encode_flop / (ENCODE_UTILISATION * H100_BF16_FLOPS) / 60
    flat_gb = WIKIPEDIA * EMBEDDING_DIM * 4 / 1e9
    search_ms = largest["flat_search_ms_per_query"] * ratio  # brute force is linear in N
    sizes = [r["passages"] for r in corpus]
    hnsw_b = growth(sizes, [r["hnsw_build_s"] for r in corpus])
    hnsw_h = largest["hnsw_build_s"] * ratio**hnsw_b / 3600
    likelihood = next(r for r in teachers if r["teacher"] == "answer likelihood" and r["k"] == TEACHER_K)
    read_7b = 2 * LM_7B_PARAMS * LM_READ_TOKENS
    read_small = 2 * SMOLLM2_PARAMS * LM_READ_TOKENS
    achieved = likelihood["passages_per_s"] * read_small
    cpu_reads = achieved / read_7b
    cpu_hours = 1000 * TEACHER_K / cpu_reads / 3600
    gpu_reads = LM_UTILISATION * H100_BF16_FLOPS / read_7b
    gpu_hours = 100_000 * 20 / gpu_reads / 3600
    fits = "fits" if flat_gb < MACHINE_GIB * 1.074 else f"does not fit in {MACHINE_GIB} GiB"
    return [
        "| stage | cost at 21M passages / a 7B teacher | this machine (extrapolated) | one H100 (FLOP estimate) |",
        "|---|---|---|---|",
        f"| encode the corpus (MiniLM) | {encode_flop:.1e} FLOP ({tokens_per_passage:.0f} tokens × "
        f"{flop_per_token / 1e6:.0f} MFLOP per passage) | {encode_days:.1f} days at {largest['passages_per_s']:.1f} "
        f"passages/s | {encode_gpu_min:.0f} min at {ENCODE_UTILISATION:.0%} of peak |",
        f"| flat index | {flat_gb:.0f} GB of float32 vectors | {fits} | `index=ivfpq` or `index.shards` |",
        f"| flat search | {search_ms:.0f} ms per query (linear in N) | 1,000 queries in {search_ms / 60:.1f} min | – |",
        f"| HNSW build (M=32) | size^{hnsw_b:.2f} from the measured builds | {hnsw_h:.1f} h, if the vectors fit | – |",
        f"| LM teacher, answer likelihood | {read_7b / 1e12:.1f} TFLOP per read ({read_7b / read_small:.0f}× SmolLM2) "
        f"| {cpu_reads:.3f} reads/s at SmolLM2's achieved {achieved / 1e9:.0f} GFLOP/s: 1,000 questions × "
        f"K={TEACHER_K} in {cpu_hours:.0f} h | {gpu_reads:.0f} reads/s at {LM_UTILISATION:.0%} of peak: "
        f"100k questions × K=20 in {gpu_hours:.1f} GPU-hours |",
    ]


def report(corpus: list[dict[str, Any]], teachers: list[dict[str, Any]], command: str) -> str:
    """The Markdown written to ``benchmarks/results/scaling.md``."""
    sizes = [r["passages"] for r in corpus]
    exponents = {
        "encoding": growth(sizes, [r["encode_s"] for r in corpus]),
        "flat build": growth(sizes, [r["flat_build_s"] for r in corpus]),
        "flat search": growth(sizes, [r["flat_search_ms_per_query"] for r in corpus]),
        "hnsw build": growth(sizes, [r["hnsw_build_s"] for r in corpus]),
        "hnsw search": growth(sizes, [r["hnsw_search_ms_per_query"] for r in corpus]),
    }
    for name in ("answer likelihood", "attention"):
        rows = [r for r in teachers if r["teacher"] == name]
        exponents[f"{name} per question vs K"] = growth([r["k"] for r in rows], [r["s_per_question"] for r in rows])
    lines = [
        "# Scaling on this machine: corpus size and K",
        "",
        f"Command: `{command}` ({torch.get_num_threads()} CPU threads; nothing else ran on the cores).",
        "",
        "## Corpus encoding and indexing (MiniLM-L6, bf16 autocast; 1,000 dev queries searched, top-100)",
        "",
        "| passages | tokens | encode (s) | passages/s | achieved GFLOP/s | flat build (s) | flat search (ms/query) "
        "| HNSW build (s) | HNSW search (ms/query) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['passages']:,} | {r['tokens']:,} | {r['encode_s']:.1f} | {r['passages_per_s']:.1f} | "
        f"{r['encode_gflops']:.0f} | {r['flat_build_s']:.3f} | {r['flat_search_ms_per_query']:.3f} | "
        f"{r['hnsw_build_s']:.2f} | {r['hnsw_search_ms_per_query']:.3f} | {r['peak_rss_mb']:.0f} |"
        for r in corpus
    ]
    lines += [
        "",
        "## LM-teacher scoring (SmolLM2-135M, bf16 autocast; BM25 top-K over a 5,000-paragraph slice)",
        "",
        "| teacher | K | questions | s / question | passages/s | peak RSS growth (MB) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['teacher']} | {r['k']} | {r['questions']} | {r['s_per_question']:.2f} | {r['passages_per_s']:.2f} | "
        f"{r['peak_rss_growth_mb']:.0f} |"
        for r in teachers
    ]
    lines += ["", "## Growth exponents (time ∝ size^b; 1 = linear)", "", "| stage | b |", "|---|---|"]
    lines += [f"| {name} | {b:.2f} |" for name, b in exponents.items()]
    lines += [
        "",
        "Peak RSS is the process's peak so far (it never goes down), so a row's figure includes earlier rows'.",
        "Achieved GFLOP/s counts 2 × MiniLM's non-embedding parameters per token and ignores attention's",
        "own matmuls (about 5% at SQuAD lengths).",
        "",
        f"## Projection to {WIKIPEDIA:,} passages (DPR's Wikipedia) and a 7B teacher",
        "",
        *projection(corpus, teachers),
        "",
        "Extrapolated from the rows above, not measured. CPU figures scale the largest measured size linearly",
        "(HNSW by its fitted exponent); GPU figures count FLOP (2 × non-embedding parameters per token) at an",
        f"assumed share of an H100's {H100_BF16_FLOPS / 1e12:.0f} dense bf16 TFLOP/s; a 7B LM has "
        f"{LM_7B_PARAMS / 1e9:.1f}B non-embedding parameters and a read {LM_READ_TOKENS} tokens.",
    ]
    return "\n".join(lines) + "\n"


def plot(corpus: list[dict[str, Any]], teachers: list[dict[str, Any]], path: Path) -> None:
    """Measured points and their power-law fit, extrapolated to a Wikipedia-sized corpus (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = np.array([r["passages"] for r in corpus], dtype=float)
    reach = np.geomspace(sizes.min(), WIKIPEDIA, 50)
    for key, label in (
        ("encode_s", "encode corpus (s)"),
        ("flat_build_s", "flat index build (s)"),
        ("hnsw_build_s", "HNSW build (s)"),
        ("flat_search_ms_per_query", "flat search (ms/query)"),
    ):
        values = np.array([r[key] for r in corpus])
        (line,) = left.loglog(sizes, values, "o-", label=f"{label}, b={growth(list(sizes), list(values)):.2f}")
        # every passage is touched, so the cost grows at least linearly once fixed overheads stop dominating
        slope = max(growth(list(sizes), list(values)), 1.0)
        left.loglog(reach, values[-1] * (reach / sizes[-1]) ** slope, "--", color=line.get_color(), alpha=0.6)
    left.axvline(WIKIPEDIA, color="grey", lw=0.8)
    left.text(WIKIPEDIA, left.get_ylim()[0], " 21M", color="grey", va="bottom", ha="right")
    left.set(xlabel="passages in the corpus", title="Corpus side, 2 CPU cores (dashed: extrapolated, b ≥ 1)")
    left.legend(fontsize=8)
    for name in ("answer likelihood", "attention"):
        rows = [r for r in teachers if r["teacher"] == name]
        ks, seconds = [r["k"] for r in rows], [r["s_per_question"] for r in rows]
        right.loglog(ks, seconds, "o-", label=f"{name}, b={growth(ks, seconds):.2f}")
    right.set(xlabel="K candidates per question", ylabel="seconds per question", title="LM teacher (SmolLM2-135M)")
    for axis in (right.xaxis, right.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_xticks([r["k"] for r in teachers if r["teacher"] == "answer likelihood"])
    right.set_yticks([0.5, 1, 2, 4, 8, 16])
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, FULL])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=16, help="training questions the LM teachers score")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--from-json", action="store_true", help="redraw table and plot from scaling.json")
    args = parser.parse_args()
    quiet_third_party()
    torch.manual_seed(0)
    command = "python benchmarks/scaling.py" + (
        f" --sizes {' '.join(map(str, args.sizes))} --queries {args.queries} --questions {args.questions}"
        f" --ks {' '.join(map(str, args.ks))}"
    )
    out = ROOT / "benchmarks" / "results"
    if args.from_json:
        saved = json.loads((out / "scaling.json").read_text())
        corpus, teachers, command = saved["corpus"], saved["teachers"], saved.get("command", command)
    else:
        corpus = corpus_rows(sorted(args.sizes), args.queries, args.seed)
        teachers = teacher_rows(args.questions, sorted(args.ks), args.seed)
        record = {"command": command, "corpus": corpus, "teachers": teachers}
        (out / "scaling.json").write_text(json.dumps(record, indent=2) + "\n")
    text = report(corpus, teachers, command)
    (out / "scaling.md").write_text(text)
    plot(corpus, teachers, out / "scaling.png")
    print(text)


if __name__ == "__main__":
    main()
