"""Which attention-teacher variant to pick: how often each one's top-1 candidate is the gold paragraph.

Teacher quality only (no training): the same SQuAD-open training questions and BM25 top-K candidates,
scored by the packaged SmolLM2-135M-Instruct as the reader under each aggregation variant, next to the
LM-likelihood teacher and chance:

    python benchmarks/attention_variants.py                    # 32 questions x K=10
    python benchmarks/attention_variants.py --questions 100
    python benchmarks/attention_variants.py --questions 100 --only legacy --lm-path <fine-tuned reader folder> \
        --out attention_teacher_finetuned.md      # the same teacher with a fine-tuned reader

Writes ``benchmarks/results/attention_variants.md`` and prints it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from teacher_setup import load_lm, publish, shown_path, squad_slice

from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.runtime.precision import cpu_bf16_description, resolve_precision
from ragdistill.teachers.attention import AttentionTeacher
from ragdistill.teachers.base import Teacher
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

TOP_THIRD = list(range(-10, 0))  # SmolLM2 has 30 layers

LEGACY = {"passage_reduction": "sum", "log_score": True}
"""The log attention mass every published row of this table was measured with (the default before 2026-12-07)."""

VARIANTS: dict[str, dict[str, Any]] = {
    "α·‖v‖, all layers, all answer tokens, log of the sum (legacy)": LEGACY,
    "α·‖v‖, mean over passage tokens, no log (the papers' score, default)": {},
    "α (no value norm)": {**LEGACY, "value_norm": False},
    "pre-softmax q·k": {"pre_softmax": True, "value_norm": False},
    "pre-softmax q·k, mean over passage tokens": {
        "pre_softmax": True,
        "value_norm": False,
        "passage_reduction": "mean",
    },
    "first answer token only": {**LEGACY, "first_token_only": True},
    "top third of layers (20-29)": {**LEGACY, "layers": TOP_THIRD},
    "middle third of layers (10-19)": {**LEGACY, "layers": list(range(10, 20))},
    "log of the mean over passage tokens": {"passage_reduction": "mean", "log_score": True},
    "passages shuffled": {**LEGACY, "shuffle_passages": True},
    "reader's generated answer": {**LEGACY, "target": "generated"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--only", nargs="+", help="run only the teachers whose names contain one of these")
    parser.add_argument("--out", default="attention_variants.md", help="file name under benchmarks/results/")
    parser.add_argument("--lm-path", help="the reader LM (a transformers folder or hub id); default: packaged SmolLM2")
    args = parser.parse_args()
    data, candidates = squad_slice(args.questions, args.k)
    questions = data.train
    lm = load_lm(args.lm_path)
    teachers: dict[str, Teacher] = {
        f"attention: {name}": AttentionTeacher(lm, num_candidates=args.k, **options)
        for name, options in VARIANTS.items()
    }
    teachers["lm_likelihood (answer)"] = LMLikelihoodTeacher(lm, num_candidates=args.k)
    teachers["lm_likelihood (query likelihood)"] = LMLikelihoodTeacher(lm, num_candidates=args.k, target="question")
    teachers["lm_likelihood (yes/no relevance)"] = LMLikelihoodTeacher(lm, num_candidates=args.k, target="relevance")
    if args.only:
        teachers = {name: t for name, t in teachers.items() if any(part in name for part in args.only)}
    reader = "SmolLM2-135M-Instruct" if args.lm_path is None else f"`{shown_path(args.lm_path)}`"
    rows = []
    chance = 0.0
    for name, teacher in teachers.items():
        start = time.perf_counter()
        signals = teacher.score(questions, candidates, data)
        seconds = time.perf_counter() - start
        quality = teacher_quality(signals, questions, data)
        chance = quality.get("teacher/random_top1_gold", chance)
        rows.append(
            f"| {name} | {quality.get('teacher/top1_gold', float('nan')):.3f} | "
            f"{quality.get('teacher/top1_answer', float('nan')):.3f} | {quality['teacher/entropy']:.2f} | "
            f"{len(signals)} | {len(signals) * args.k / seconds:.1f} |"
        )
    report = "\n".join(
        [
            f"# Attention-teacher variants: teacher quality ({reader} as the reader)",
            "",
            f"Command: `python benchmarks/attention_variants.py --questions {args.questions} --k {args.k}"
            + (f" --only {' '.join(repr(o) for o in args.only)}" if args.only else "")
            + (f" --lm-path {shown_path(args.lm_path)}" if args.lm_path else "")
            + (f" --out {args.out}" if args.out != "attention_variants.md" else "")
            + "` "
            f"({len(questions)} SQuAD training questions, BM25 top-{args.k} from a 5,000-paragraph SQuAD-open "
            f"slice holding every gold paragraph; {torch.get_num_threads()} CPU threads, teachers' bf16-mixed run as "
            f"{resolve_precision('bf16-mixed')}: {cpu_bf16_description()}).",
            "",
            "| teacher | top-1 is gold | top-1 has answer | entropy (nats) | questions | passages/s |",
            "|---|---|---|---|---|---|",
            *rows,
            f"| chance (a random judged candidate) | {chance:.3f} | | | | |",
            "",
            "top-1 is gold: among questions whose K candidates hold the gold paragraph. Entropy of softmax(score)",
            "at temperature 1 (what `loss=kl` with `tau_teacher=1` distils).",
        ]
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()
