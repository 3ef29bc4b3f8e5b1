"""Corpus encoding, side by side in one process: our encoder's speed switches vs ``SentenceTransformer.encode``.

The same packaged all-MiniLM-L6-v2 and the same SQuAD-open paragraphs. References: sentence-transformers'
default (float32) and sentence-transformers inside ``torch.autocast("cpu", bfloat16)``. Ours: ``encode_texts``
with each :class:`~ragdistill.retriever.encode.EncodeSettings` switch (precision, token-budget batches,
threads, int8 dynamic quantisation) alone and combined, plus int8 on every linear layer (not a switch: it
shows why ``quantize=int8`` keeps the FFN down-projections in float):

    python benchmarks/encoding_vs_st.py                      # 2,000 paragraphs, every variant, 2 rounds
    python benchmarks/encoding_vs_st.py --passages 20958 --repeats 1 --variants st-fp32 st-bf16 bf16 int8-bf16

Every variant is warmed up on 64 paragraphs, then the variants are timed in turn (A, B, C, A, B, C, ...) so
background load hits them alike; a variant's time is its best round. Each also encodes the dev questions,
which are searched in a flat inner-product index over its passage vectors: gold-paragraph R@1/5/20 (the
slice keeps every question's gold paragraph). Achieved GFLOP/s counts 2 × MiniLM's non-embedding parameters
per token and is set against the matmul peak measured in the same process for the arithmetic the variant
runs (fp32, bf16, int8; a variant mixing int8 and float layers against the peak of that mix). The chosen
default is the fastest switch setting that costs at most 0.5 point R@5 against sentence-transformers'
float32 vectors; a profile of it says where the time goes, which is why a missed target is missed.

Writes (or replaces) this corpus size's section of ``benchmarks/results/encoding_vs_st.md``.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matmul_peak import peak_gflops
from scaling import FULL, encoder_flops_per_token
from sentence_transformers import SentenceTransformer
from teacher_setup import ROOT
from timing import timed
from torch import nn
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from ragdistill.data.schemas import RetrievalData
from ragdistill.data.squad import load_squad_open
from ragdistill.evaluation.metrics import evaluate_run
from ragdistill.index.faiss_index import FaissIndex
from ragdistill.models.locate import resolve_model_path
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import DEFAULT_ENCODING, EncodeSettings, encode_texts, quantize_int8, token_lengths
from ragdistill.utils.quiet import quiet_third_party

BATCH = 64
BUDGET = BATCH * 256
"""Token budget of the budget variants: the padded size of a full fixed batch of the longest passages
(64 × 256 tokens), so no batch holds more than before."""
BUDGET_ROWS = 256
"""Most texts per batch of the budget variants (binds on questions only: the budget would put 400 in one)."""
KS = (1, 5, 20)
MAX_R5_LOSS = 0.5
"""Points of R@5 a speed-up may cost and still be the default (the performance issue's rule)."""
RESULTS = ROOT / "benchmarks" / "results" / "encoding_vs_st.md"
REFERENCE = "st-fp32"
PROFILED = 8 * BATCH
"""Passages the chosen variant is profiled on."""
MATMUL_OPS = ("addmm", "aten::mm", "bmm", "linear", "matmul", "scaled_dot_product", "mkldnn", "onednn")
"""Profiler op names (substrings) counted as matrix products; the rest is memory-bound or Python."""

Encode = Callable[[list[str], str], np.ndarray]

SWITCHES: dict[str, tuple[str, dict[str, Any]]] = {
    "fp32": ("fp32 (`precision=32-true`)", {"precision": "32-true"}),
    "bf16": ("bf16 autocast (`precision=bf16-mixed`)", {}),
    "bf16-1thread": ("bf16, 1 thread (`threads=1`)", {"threads": 1}),
    "bf16-budget": (
        f"bf16, token budget (`max_tokens={BUDGET}`, `batch_size={BUDGET_ROWS}`)",
        {"max_tokens": BUDGET, "batch_size": BUDGET_ROWS},
    ),
    "int8": ("int8 (`quantize=int8`, `precision=32-true`)", {"precision": "32-true", "quantize": "int8"}),
    "int8-bf16": ("int8 + bf16 (`quantize=int8`)", {"quantize": "int8"}),
    "bf16-true": ("bf16 weights, every op in bf16 (`precision=bf16-true`)", {"precision": "bf16-true"}),
    "int8-bf16-true": (
        "int8 + bf16 weights (`quantize=int8`, `precision=bf16-true`)",
        {"precision": "bf16-true", "quantize": "int8"},
    ),
    "int8-bf16-budget": (
        f"int8 + bf16, token budget (`quantize=int8`, `max_tokens={BUDGET}`, `batch_size={BUDGET_ROWS}`)",
        {"quantize": "int8", "max_tokens": BUDGET, "batch_size": BUDGET_ROWS},
    ),
}
"""Our variants: EncodeSettings changes from bf16 autocast, fixed batches of 64, on the CPU."""
OTHERS = {
    "st-fp32": "sentence-transformers, fp32 (its default)",
    "st-bf16": "sentence-transformers, bf16 autocast",
    "int8-all": "int8 on every linear layer, fp32 (not a switch)",
}
NAMES = [*OTHERS, *SWITCHES]


@dataclass
class Variant:
    """One way to encode: its table label, the arithmetic it runs and ``encode(texts, kind) -> [N, D]``.

    ``settings`` are the :class:`EncodeSettings` it runs; for the others, their equivalent precision.
    ``int8_share`` is the share of the counted FLOPs that run in int8.
    """

    name: str
    label: str
    settings: EncodeSettings
    encode: Encode
    int8_share: float = 0.0

    @property
    def is_switch(self) -> bool:
        """Whether config switches select it."""
        return self.name in SWITCHES

    @property
    def may_be_default(self) -> bool:
        """A switch setting that holds on any machine: a thread count is the machine's and its load's."""
        return self.is_switch and self.settings.threads is None


@dataclass
class Result:
    """One variant's measurements."""

    variant: Variant
    seconds: float  # best round
    vectors: np.ndarray  # [N, D] passage vectors
    recall: dict[int, float]  # k -> gold R@k in points
    peak: float  # GFLOP/s of the arithmetic it runs

    @property
    def name(self) -> str:
        """The variant's command-line name."""
        return self.variant.name


def settings(**changes: Any) -> EncodeSettings:
    """The benchmark's base settings (bf16 autocast, fixed batches of 64, CPU, no bar) with ``changes``."""
    base = {"batch_size": BATCH, "max_tokens": None, "accelerator": "cpu", "precision": "bf16-mixed"}
    return EncodeSettings(**base | {"progress": False} | changes)


def st_encoder(st: SentenceTransformer, bf16: bool) -> Encode:
    """``SentenceTransformer.encode`` (queries and passages alike: the packaged model has no prefixes)."""

    def encode(texts: list[str], kind: str) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            vectors = st.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_tensor=True)
        return vectors.float().numpy()

    return encode


def ours_encoder(encoder: BiEncoderModule, chosen: EncodeSettings) -> Encode:
    """``encode_texts`` with ``chosen`` settings."""
    return lambda texts, kind: encode_texts(encoder, texts, kind, chosen)


def int8_share(tower: nn.Module, every_layer: bool) -> float:
    """Share of the counted FLOPs (non-embedding parameters) that ``quantize_int8`` (or, with ``every_layer``,
    quantising every linear layer) puts in int8."""
    body = sum(p.numel() for name, p in tower.named_parameters() if "embeddings" not in name)
    linear = [m for m in tower.modules() if isinstance(m, nn.Linear)]
    return sum(m.weight.numel() for m in linear if every_layer or m.in_features <= m.out_features) / body


def variants(names: list[str], ours: BiEncoderModule) -> list[Variant]:
    """The named variants, in the order given; ours run ``ours``."""
    st = SentenceTransformer(resolve_model_path("packaged:all-MiniLM-L6-v2"), device="cpu")
    built = []
    for name in names:
        if name in SWITCHES:
            label, changes = SWITCHES[name]
            chosen = settings(**changes)
            share = int8_share(ours.passage_encoder, every_layer=False) if chosen.quantize == "int8" else 0.0
            built.append(Variant(name, label, chosen, ours_encoder(ours, chosen), share))
        elif name == "int8-all":
            every = BiEncoderModule().eval()
            tower = quantize_dynamic(every.passage_encoder, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
            every.passage_encoder = every.query_encoder = tower
            fp32 = settings(precision="32-true")
            built.append(
                Variant(name, OTHERS[name], fp32, ours_encoder(every, fp32), int8_share(ours.passage_encoder, True))
            )
        else:
            bf16 = name == "st-bf16"
            precision = settings(precision="bf16-mixed" if bf16 else "32-true")
            built.append(Variant(name, OTHERS[name], precision, st_encoder(st, bf16)))
    return built


def int8_peak_gflops(size: int, repeats: int) -> float:
    """Best GFLOP/s of an int8 dynamically quantised ``size × size`` linear layer on ``size`` float rows.

    The kernel the int8 variants run (activation quantisation included), where :func:`peak_gflops` times
    plain float products.
    """
    layer = quantize_int8(nn.Sequential(nn.Linear(size, size, bias=False)))
    x = torch.randn(size, size)
    layer(x)  # warm-up
    best = min(timed(layer, x)[1] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def peaks(repeats: int) -> dict[str, float]:
    """This CPU's matmul peak (GFLOP/s) per arithmetic, measured now, under the same load as the encodings."""
    return {
        "fp32": peak_gflops(torch.float32, 2048, repeats),
        "bf16": peak_gflops(torch.bfloat16, 2048, repeats),
        "int8": int8_peak_gflops(2048, repeats),
    }


def variant_peak(variant: Variant, measured: dict[str, float]) -> float:
    """The peak of the arithmetic ``variant`` runs: int8 layers at the int8 peak, the rest at the float one.

    For a mix, the rate its FLOPs would have if every layer ran at its own arithmetic's peak (times add).
    """
    float_peak = measured["bf16" if str(variant.settings.precision).startswith("bf16") else "fp32"]
    share = variant.int8_share
    return 1 / (share / measured["int8"] + (1 - share) / float_peak)


def recall(encode: Encode, passages: np.ndarray, data: RetrievalData) -> dict[int, float]:
    """Gold-paragraph R@k (points) of the dev questions, encoded by ``encode``, in a flat index of ``passages``."""
    index = FaissIndex(kind="flat", metric="ip")
    index.build(passages, [p.id for p in data.corpus])
    scores, ids = index.search(encode([q.text for q in data.eval], "query"), max(KS))  # [Q, 20]
    run = {q.id: dict(zip(row, map(float, s), strict=False)) for q, row, s in zip(data.eval, ids, scores, strict=True)}
    metrics = evaluate_run(run, data.eval, None, KS)
    return {k: 100 * metrics[f"gold/recall@{k}"] for k in KS}


def measure(
    built: list[Variant], texts: list[str], data: RetrievalData, repeats: int, measured: dict[str, float]
) -> list[Result]:
    """Warm every variant up, time them in interleaved rounds (best round kept), then score their R@k."""
    for variant in built:
        variant.encode(texts[:BATCH], "passage")  # warm-up: thread pools, packing buffers, first-call costs
    rounds: dict[str, list[tuple[np.ndarray, float]]] = {v.name: [] for v in built}
    for _ in range(repeats):
        for variant in built:
            rounds[variant.name].append(timed(variant.encode, texts, "passage"))
    results = []
    for variant in built:
        vectors = rounds[variant.name][0][0]
        best = min(seconds for _, seconds in rounds[variant.name])
        scores = recall(variant.encode, vectors, data)
        results.append(Result(variant, best, vectors, scores, variant_peak(variant, measured)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=2000, help=f"corpus slice; >= {FULL} = the whole corpus")
    parser.add_argument("--questions", type=int, default=1000, help="dev questions (their gold paragraphs are kept)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds; a variant's best is kept")
    parser.add_argument("--variants", nargs="+", default=NAMES, choices=NAMES)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (a section per corpus size)")
    args = parser.parse_args()
    if REFERENCE not in args.variants:
        parser.error(f"--variants must include the reference {REFERENCE}")
    quiet_third_party()
    logging.getLogger("ragdistill.evaluation.metrics").setLevel(logging.ERROR)  # answer/* skipped on purpose
    torch.manual_seed(0)
    full = args.passages >= FULL
    data = load_squad_open(
        n_train=0, n_eval=args.questions, corpus_size=None if full else args.passages, seed=args.seed
    )
    texts = [p.text for p in data.corpus]
    ours = BiEncoderModule().eval()
    measured = peaks(repeats=5)
    results = measure(variants(args.variants, ours), texts, data, args.repeats, measured)
    chosen = choose(results)
    command = f"python benchmarks/encoding_vs_st.py --passages {args.passages} --repeats {args.repeats}"
    if args.questions != 1000:
        command += f" --questions {args.questions}"
    if args.variants != NAMES:
        command += f" --variants {' '.join(args.variants)}"
    context = Context(
        command=command,
        passages=len(texts),
        tokens=sum(token_lengths(ours, texts, "passage")),
        questions=len(data.eval),
        repeats=args.repeats,
        measured=measured,
        flops_per_token=encoder_flops_per_token(ours),
        profiled=len(texts[:PROFILED]),
        matmul_share=profile_share(chosen.variant.encode, texts[:PROFILED]),
        tokenize_s=timed(token_lengths, ours, texts[:PROFILED], "passage")[1] / len(texts[:PROFILED]),
    )
    report = render(results, context)
    write_section(args.out, len(texts), report)
    print(report)


def choose(results: list[Result]) -> Result:
    """The fastest switch setting (thread count left alone) within :data:`MAX_R5_LOSS` points of R@5 of the
    reference."""
    reference = next(r for r in results if r.name == REFERENCE)
    allowed = [r for r in results if r.variant.may_be_default and r.recall[5] >= reference.recall[5] - MAX_R5_LOSS]
    return min(allowed, key=lambda r: r.seconds)


def profile_share(encode: Encode, texts: list[str]) -> float:
    """Share of the profiled CPU time of encoding ``texts`` that matrix products take."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        encode(texts, "passage")
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if any(op in e.key for op in MATMUL_OPS)) / total


@dataclass
class Context:
    """What the report states besides the results."""

    command: str
    passages: int
    tokens: int
    questions: int
    repeats: int
    measured: dict[str, float]
    flops_per_token: float
    profiled: int  # passages the chosen variant was profiled on
    matmul_share: float  # of the chosen variant's time
    tokenize_s: float  # per passage


def render(results: list[Result], context: Context) -> str:
    """This corpus size's section of the results file: table, chosen default, targets and why."""
    rate = {r.name: context.passages / r.seconds for r in results}
    gflops = {r.name: context.flops_per_token * context.tokens / r.seconds / 1e9 for r in results}
    reference = next(r for r in results if r.name == REFERENCE)
    peak = context.measured
    lines = [
        f"## {context.passages:,} passages",
        "",
        f"Command: `{context.command}` ({context.passages:,} SQuAD-open paragraphs, {context.tokens:,} tokens; "
        f"{context.questions:,} dev questions, every gold paragraph in the corpus; packaged all-MiniLM-L6-v2, "
        f"batch {BATCH}, max length 256, {torch.get_num_threads()} CPU threads; best of {context.repeats} "
        f"interleaved round(s)). Matmul peaks measured in the same process (2048², best of 5): fp32 "
        f"{peak['fp32']:.0f}, bf16 {peak['bf16']:.0f}, int8 dynamic linear {peak['int8']:.0f} GFLOP/s.",
        "",
        "| encoder | seconds | passages/s | vs ST fp32 | vs ST bf16 | GFLOP/s (% of its peak) | cosine to ST fp32 "
        "(mean / min) | R@1 | R@5 | R@20 | ΔR@5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cosine = np.sum(r.vectors * reference.vectors, axis=1) / (
            np.linalg.norm(r.vectors, axis=1) * np.linalg.norm(reference.vectors, axis=1)
        )
        versus_bf16 = f"{rate[r.name] / rate['st-bf16']:.2f}×" if "st-bf16" in rate else "–"
        lines.append(
            f"| {r.variant.label} | {r.seconds:.1f} | {rate[r.name]:.1f} | {rate[r.name] / rate[REFERENCE]:.2f}× | "
            f"{versus_bf16} | {gflops[r.name]:.0f} ({100 * gflops[r.name] / r.peak:.0f}% of {r.peak:.0f}) | "
            f"{cosine.mean():.5f} / {cosine.min():.5f} | "
            + " | ".join(f"{r.recall[k]:.1f}" for k in KS)
            + f" | {r.recall[5] - reference.recall[5]:+.1f} |"
        )
    return "\n".join([*lines, "", *verdicts(results, rate, gflops, context)]) + "\n"


def verdicts(results: list[Result], rate: dict[str, float], gflops: dict[str, float], context: Context) -> list[str]:
    """The default chosen by the R@5 rule, and each target met or missed, with the measured reason."""
    reference = next(r for r in results if r.name == REFERENCE)
    chosen = choose(results)
    loss = {r.name: reference.recall[5] - r.recall[5] for r in results}
    is_default = replace(chosen.variant.settings, accelerator="auto", progress=True) == DEFAULT_ENCODING
    over = [r for r in results if r.seconds < chosen.seconds and loss[r.name] > MAX_R5_LOSS]
    threads = [
        r for r in results if r.variant.is_switch and not r.variant.may_be_default and r.seconds < chosen.seconds
    ]
    share, amdahl = context.matmul_share, 1 / (1 - context.matmul_share)
    lines = [
        f"**Chosen default: {chosen.variant.label}**, the fastest switch setting within {MAX_R5_LOSS} point R@5 of "
        f"ST fp32 (ΔR@5 {-loss[chosen.name]:+.1f}); it "
        + ("is" if is_default else f"is **not** (default: `{DEFAULT_ENCODING}`)")
        + " `EncodeSettings`' and `conf/evaluation/default.yaml`'s default."
        + "".join(f" Faster, but over the R@5 budget: {r.variant.label} (ΔR@5 {-loss[r.name]:+.1f})." for r in over)
        + "".join(
            f" Faster here, but not a default: {r.variant.label} (a thread count fits one machine and its load)."
            for r in threads
        ),
        "",
        f"Profile of the chosen variant ({context.profiled} passages): matrix products take {100 * share:.0f}% of "
        "the CPU time; the rest (layer norm, GELU, softmax, casts, quantising activations, Lightning, Python) "
        f"counts no FLOPs, so infinitely fast products would make it at most {amdahl:.1f}× faster. Tokenisation: "
        f"{1e3 * context.tokenize_s:.2f} ms per passage ({100 * context.tokenize_s * rate[chosen.name]:.0f}% of "
        "the time).",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    speed = rate[chosen.name] / rate[REFERENCE]
    efficiency = gflops[chosen.name] / chosen.peak
    lines.append(f"| ≥ 3× ST fp32, R@5 within {MAX_R5_LOSS} | {speed:.2f}× (chosen) | {_met(speed >= 3)} |")
    if "st-bf16" in rate:
        bf16 = [r for r in results if r.variant.may_be_default and r.variant.settings.precision == "bf16-mixed"]
        plain = min((r for r in bf16 if r.variant.settings.quantize == "none"), key=lambda r: r.seconds)
        lines.append(
            f"| ≥ 1.1× ST under the same bf16 setting | best bf16 switch without int8 ({plain.variant.label}) "
            f"{rate[plain.name] / rate['st-bf16']:.2f}×; chosen {rate[chosen.name] / rate['st-bf16']:.2f}× | "
            f"{_met(rate[plain.name] / rate['st-bf16'] >= 1.1)} without int8, "
            f"{_met(rate[chosen.name] / rate['st-bf16'] >= 1.1)} with the chosen |"
        )
    lines.append(
        f"| achieved FLOP/s ≥ 50% of peak | {100 * efficiency:.0f}% of {chosen.peak:.0f} GFLOP/s (chosen) | "
        f"{_met(efficiency >= 0.5)} |"
    )
    lines += ["", "Why a missed target is missed, from the figures above:", ""]
    if speed < 3:
        lines.append(_why_not_3x(results, rate, gflops, chosen, context))
    if "st-bf16" in rate and rate[chosen.name] / rate["st-bf16"] < 1.1:
        lines.append(
            "- 1.1× ST in bf16: our batches are already length-sorted with padding to the longest in the batch, "
            "as sentence-transformers' are; the same model at the same precision does the same arithmetic."
        )
    if efficiency < 0.5:
        lines.append(
            f"- 50% of peak: inside the products the rate is ~{100 * efficiency / share:.0f}% of the peak "
            "(MiniLM's matrices are 384 wide, at most 1536, far smaller than the 2048² peak products), and the "
            f"other {100 * (1 - share):.0f}% of the time does no counted FLOPs."
        )
    return lines


def _why_not_3x(
    results: list[Result], rate: dict[str, float], gflops: dict[str, float], chosen: Result, context: Context
) -> str:
    """Why 3× ST fp32 is out of reach: the product rate it would take, and what int8 gave."""
    target_s = chosen.seconds * rate[chosen.name] / (3 * rate[REFERENCE])  # seconds at 3× ST fp32
    left_s = target_s - (1 - context.matmul_share) * chosen.seconds  # for the products, the rest kept as is
    flops = gflops[chosen.name] * chosen.seconds  # GFLOP counted
    float_peak = context.measured["bf16" if str(chosen.variant.settings.precision).startswith("bf16") else "fp32"]
    products = (
        f"its products would have to run at {flops / left_s:.0f} GFLOP/s, {100 * flops / left_s / float_peak:.0f}% "
        f"of the {float_peak:.0f} GFLOP/s matmul peak (they now run at "
        f"{100 * gflops[chosen.name] / context.matmul_share / float_peak:.0f}%)"
        if left_s > 0
        else "not even infinitely fast products would do"
    )
    why = (
        f"- 3× ST fp32 is {3 * rate[REFERENCE]:.0f} passages/s. Keeping the {100 * (1 - context.matmul_share):.0f}% "
        f"of the chosen variant's time spent outside matrix products, {products}."
    )
    by_name = {r.name: r for r in results}
    twins = [
        (f"int8-{r.name}" if r.name != "bf16" else "int8-bf16", r.name) for r in results if r.name.startswith("bf16")
    ]
    ratios = [f"{rate[i] / rate[b]:.2f}× ({by_name[i].variant.label})" for i, b in twins if i in rate]
    if ratios:
        why += (
            " The int8 kernels' peak is higher, but int8 encodes at "
            + ", ".join(ratios)
            + " the speed of the same settings in bf16: quantising activations at every call, and the down-projections"
            " left in float, take back what the int8 products gain."
        )
    return why


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


HEADER = (
    "# Corpus encoding: ragdistill's speed switches vs sentence-transformers (same model, same texts)\n\n"
    "Written by `benchmarks/encoding_vs_st.py`, one section per corpus size. ΔR@5: points against ST fp32; "
    f"the default is the fastest switch setting within {MAX_R5_LOSS} point R@5.\n\n"
)


def write_section(path: Path, passages: int, section: str, header: str = HEADER) -> None:
    """Put ``section`` into ``path`` under its corpus size's marker, keeping the other sizes' sections."""
    marker = "<!-- passages={} -->\n"
    text = path.read_text() if path.exists() else ""
    parts = dict(re.findall(r"<!-- passages=(\d+) -->\n(.*?)(?=<!-- passages=|\Z)", text, flags=re.S))
    parts[str(passages)] = section + "\n"
    path.write_text(header + "".join(marker.format(k) + parts[k] for k in sorted(parts, key=int)))


if __name__ == "__main__":
    main()
