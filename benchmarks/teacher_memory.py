"""Peak memory and throughput of teacher scoring as K grows: LM likelihood and attention, fp32 and bf16.

Each (teacher, precision, K) scores the same SQuAD-open training questions with their BM25 top-K in a
fresh process, with the packaged SmolLM2-135M-Instruct and the teachers' default batching (at most 8,192
padded tokens per batch):

    python benchmarks/teacher_memory.py                         # K = 10, 20, 50 × 8 questions
    python benchmarks/teacher_memory.py --ks 10 20 --questions 4

Memory is read from the process's resident-set high-water mark, reset just before scoring (Linux
``clear_refs``): torch allocates outside Python's allocator, so tracemalloc would miss it. Reports the
peak during scoring, its growth over the resident memory before scoring (LM, data and Python already
loaded, and warmed up on one question × 2 candidates), the longest prompt and passages/s. A setting
whose prompt exceeds the LM's context window is reported as such. Writes
``benchmarks/results/teacher_memory.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from teacher_setup import footprint, load_lm, publish, run_child, squad_slice

from ragdistill.teachers.attention import AttentionTeacher
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher
from ragdistill.teachers.lm_teacher import LMTeacher

TEACHERS: dict[str, type[LMTeacher]] = {"lm_likelihood": LMLikelihoodTeacher, "attention": AttentionTeacher}
ALL_IN_ONE_PROMPT = {"attention"}
"""Teachers whose prompt holds all K candidates; the others read one candidate per prompt."""


def longest_prompt(teacher: LMTeacher, name: str, data: Any, candidates: Any, k: int) -> int:
    """Tokens of the longest sequence the teacher will run (prompt and answer) over these questions."""
    builder = teacher.builder()
    longest = 0
    for question in data.train:
        passages = [data.passage(pid) for pid in candidates[question.id].ids[:k]]
        groups = [passages] if name in ALL_IN_ONE_PROMPT else [[p] for p in passages]
        for group in groups:
            longest = max(longest, builder.build(0, group, question.text, question.answers[0]).length)
    return longest


def measure(name: str, precision: str, k: int, questions: int) -> dict[str, Any]:
    """Score ``questions`` at K=``k`` in this process; return throughput, prompt length and memory."""
    data, candidates = squad_slice(questions, k)
    lm = load_lm()
    # warm up on one question × 2 candidates: the weights paged in, Lightning and the kernels initialised,
    # so the block below holds what scoring at K costs, not what any first call costs
    TEACHERS[name](lm, num_candidates=2, precision=precision).score(data.train[:1], candidates, data)
    teacher = TEACHERS[name](lm, num_candidates=k, precision=precision)
    result: dict[str, Any] = {"tokens": longest_prompt(teacher, name, data, candidates, k)}
    try:
        with footprint() as used:
            teacher.score(data.train, candidates, data)
    except ValueError as error:  # a prompt longer than the context window: refused before any work
        return result | {"error": str(error).split(":")[0]}
    return result | {
        "passages_per_s": questions * k / used.seconds,
        "rss_before_mb": used.rss_before_mb,
        "peak_mb": used.peak_mb,
        "growth_mb": used.growth_mb,
        "block_peak": used.block_peak,
    }


def table_row(name: str, precision: str, k: int, result: dict[str, Any], timed: bool) -> str:
    """One Markdown row; passages/s only from a timed run (``timed``: nothing else measured meanwhile)."""
    if "error" in result:
        return f"| {name} | {precision} | {k} | {result['tokens']:,} | – | – | – | {result['error']} |"
    rate = f"{result['passages_per_s']:.2f}" if timed else "–"
    return (
        f"| {name} | {precision} | {k} | {result['tokens']:,} | {rate} | "
        f"{result['peak_mb']:,.0f} | {result['growth_mb']:,.0f} | |"
    )


def growth_note(results: dict[tuple[str, str, int], dict[str, Any]], ks: list[int]) -> list[str]:
    """One line per teacher and precision: the memory growth at the largest K measured vs the smallest."""
    lines = []
    for (name, precision), _ in {key[:2]: None for key in results}.items():
        grown = [
            (k, results[(name, precision, k)]["growth_mb"])
            for k in ks
            if "growth_mb" in results.get((name, precision, k), {})
        ]
        if len(grown) < 2:
            continue
        (k0, g0), (k1, g1) = grown[0], grown[-1]
        lines.append(
            f"- {name} {precision}: growth {g0:,.0f} MB at K={k0} → {g1:,.0f} MB at K={k1} "
            f"({g1 / g0:.2f}× for {k1 / k0:.1f}× the candidates)."
        )
    return lines


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces this report."""
    return (
        f"python benchmarks/teacher_memory.py --ks {' '.join(map(str, args.ks))} --questions {args.questions} "
        f"--teachers {' '.join(args.teachers)} --precisions {' '.join(args.precisions)}"
        + " --memory-only"
        * args.memory_only
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--teachers", nargs="+", choices=sorted(TEACHERS), default=list(TEACHERS))
    parser.add_argument("--precisions", nargs="+", choices=["32-true", "bf16-mixed"], default=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="leave passages/s out: for a run beside other jobs (memory does not depend on them; speed does)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # "<teacher>,<precision>,<k>"
    args = parser.parse_args()
    if args.child:
        name, precision, k = args.child.split(",")
        print(json.dumps(measure(name, precision, int(k), args.questions)))
        return
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    rows = []
    for name in args.teachers:
        for precision in args.precisions:
            for k in args.ks:
                child = f"--child={name},{precision},{k}"
                results[(name, precision, k)] = run_child(__file__, [child, f"--questions={args.questions}"])
                print(name, precision, k, json.dumps(results[(name, precision, k)]), flush=True)
                rows.append(table_row(name, precision, k, results[(name, precision, k)], not args.memory_only))
    report = "\n".join(
        [
            "# Teacher scoring: peak memory and throughput against K (SmolLM2-135M-Instruct, CPU)",
            "",
            f"Command: `{command(args)}` "
            f"({args.questions} SQuAD training questions × BM25 top-K; each row a fresh process; "
            f"{torch.get_num_threads()} threads; default batching: ≤ 8,192 padded tokens per batch).",
            "",
            "| teacher | precision | K | longest sequence (tokens) | passages/s | peak RSS while scoring (MB) "
            "| growth over before scoring (MB) | note |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Peak RSS: the process's resident high-water mark, reset just before `teacher.score` (so loading is not",
            "in it); it includes the LM (float32 weights, ~0.5 GB), torch and the data set. Growth: that peak minus",
            "the resident memory just before scoring, after a warm-up on one question × 2 candidates (weights paged",
            "in, kernels initialised). passages/s: the one measured scoring call.",
            "",
            *growth_note(results, args.ks),
        ]
    )
    publish(report, "teacher_memory.md")


if __name__ == "__main__":
    main()
