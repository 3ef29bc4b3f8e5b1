"""Inside the teacher's candidate pools: how often does the student (before and after training) put the gold
paragraph first, and how often does it agree with the teacher's top-1?

If the untrained student already ranks the pools about as well as the teacher, distillation has little to
teach, whatever the loss; if the trained student moved toward the teacher but not toward gold, the teacher's
mistakes are what it learnt. Reads the teacher's signals from the cache (no LM), encodes each pool with each
retriever.

    python benchmarks/student_vs_teacher.py --cache .cache/ragdistill/teacher_signals/<key> \
        --retriever packaged:all-MiniLM-L6-v2 --retriever outputs/<date>/<time>_replug_lsr/retriever
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau
from teacher_positions import cached_signals

from ragdistill.data.signal import TeacherSignal
from ragdistill.data.squad import load_squad_open
from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.utils.quiet import quiet_third_party


def pool_figures(
    retriever: BiEncoderModule, signals: list[TeacherSignal], questions: dict, texts: dict
) -> dict[str, float]:
    """Top-1 gold rate, agreement with the teacher's top-1 and Kendall τ with the teacher, over the pools."""
    settings = EncodeSettings(64, "cpu", "bf16-mixed")
    pids = sorted({pid for s in signals for pid in s.candidate_ids})
    vectors = dict(zip(pids, encode_texts(retriever, [texts[p] for p in pids], "passage", settings), strict=True))
    queries = encode_texts(retriever, [questions[s.qid].text for s in signals], "query", settings)
    gold_hits, gold_pools, agree, taus = 0, 0, 0, []
    for signal, query in zip(signals, queries, strict=True):
        student = np.array([vectors[pid] @ query for pid in signal.candidate_ids])
        best = signal.candidate_ids[int(np.argmax(student))]
        agree += int(np.argmax(student) == np.argmax(signal.scores))
        taus.append(kendalltau(student, signal.scores).statistic)
        gold = set(questions[signal.qid].gold_ids)
        if gold & set(signal.candidate_ids):
            gold_pools += 1
            gold_hits += best in gold
    return {
        "top1_gold": gold_hits / gold_pools,
        "agrees_with_teacher_top1": agree / len(signals),
        "kendall_tau_with_teacher": float(np.nanmean(taus)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="teacher_signals/<key> folder of the teacher")
    parser.add_argument("--retriever", action="append", required=True, help="packaged name, hub id or folder")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="also write the table (with the command) to this Markdown file")
    args = parser.parse_args()
    quiet_third_party()
    data = load_squad_open(n_train=args.n_train, n_eval=0, seed=args.seed)
    signals = cached_signals(args.cache, data)
    questions = {q.id: q for q in data.train}
    texts = {p.id: p.text for p in data.corpus}
    rows = [
        "| ranks the pools | top-1 is gold | top-1 = teacher's top-1 | Kendall τ with the teacher |",
        "|---|---|---|---|",
    ]
    teacher_top1 = teacher_quality(signals, data.train, data)["teacher/top1_gold"]
    rows.append(f"| the teacher | {teacher_top1:.3f} | 1.000 | 1.000 |")
    for path in args.retriever:
        figures = pool_figures(BiEncoderModule(path=path).eval(), signals, questions, texts)
        rows.append(
            f"| `{path}` | {figures['top1_gold']:.3f} | {figures['agrees_with_teacher_top1']:.3f} "
            f"| {figures['kendall_tau_with_teacher']:.3f} |"
        )
    table = "\n".join(rows) + f"\n\n{len(signals)} training questions, K = {len(signals[0].candidate_ids)}."
    print(table)
    if args.out:
        command = f"python benchmarks/student_vs_teacher.py --cache {args.cache} " + " ".join(
            f"--retriever {r}" for r in args.retriever
        )
        args.out.write_text(f"# Student vs teacher inside the pools\n\n```bash\n{command}\n```\n\n{table}\n")


if __name__ == "__main__":
    main()
