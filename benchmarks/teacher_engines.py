"""Answer-likelihood teacher scoring on each CPU engine, side by side in one run: speed and agreement.

    python benchmarks/teacher_engines.py                     # 24 SQuAD-open questions x K=10

The same prompts (the likelihood teacher's own token ids, chat template included) go to:

- **PyTorch fp32**: our teacher in float32, the reference every other row is compared with;
- **PyTorch bf16**: our teacher under bf16 autocast, today's default;
- **llama.cpp in-process** (``llama-cpp-python``): the packaged GGUF as shipped (Q4_1, no conversion),
  evaluated on the token ids with the shared chat prefix kept in its KV cache, log-softmax on the answer
  positions only.

Columns: passages/s, the ratio to bf16, top-1 agreement and the mean per-question Spearman with fp32.
Writes ``benchmarks/results/teacher_engines.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from environment import measured_on
from scipy.stats import spearmanr
from teacher_setup import ROOT, load_lm, pair_examples, publish, squad_slice

from ragdistill.data.schemas import Question
from ragdistill.models.lm_inputs import LMExample
from ragdistill.models.packaged_lms import PACKAGED_LMS
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

Key = tuple[str, str]
"""(question id, passage id)."""


def teacher_scores(teacher: LMLikelihoodTeacher, questions: list[Question], candidates, data) -> dict[Key, float]:
    signals = teacher.score(questions, candidates, data)
    return {(s.qid, pid): float(v) for s in signals for pid, v in zip(s.candidate_ids, s.scores, strict=True)}


def llama_cpp_scores(gguf: Path, examples: dict[Key, LMExample], threads: int) -> dict[Key, float]:
    """Sum of the answer tokens' log-probabilities from llama.cpp in-process, reusing the shared prefix."""
    from llama_cpp import Llama

    longest = max(ex.length for ex in examples.values())
    llm = Llama(model_path=str(gguf), n_ctx=longest + 8, logits_all=True, n_threads=threads, verbose=False)
    scores: dict[Key, float] = {}
    previous: list[int] = []
    for key, ex in examples.items():
        ids = ex.context_ids + ex.target_ids
        shared = 0
        while shared < min(len(ids), len(previous)) - 1 and ids[shared] == previous[shared]:
            shared += 1
        llm.n_tokens = shared  # eval drops the KV cache from here on
        llm.eval(ids[shared:])
        logits = np.asarray(llm.scores[len(ex.context_ids) - 1 : len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        scores[key] = float(log_probs[np.arange(len(ex.target_ids)), ex.target_ids].sum())
        previous = ids
    return scores


def agreement(scores: dict[Key, float], reference: dict[Key, float], questions: list[Question]) -> tuple[float, float]:
    """(top-1 agreement, mean Spearman) with ``reference`` over the questions ``scores`` holds."""
    top1, rhos = [], []
    for q in questions:
        keys = [key for key in reference if key[0] == q.id]
        if not keys or any(key not in scores or np.isnan(scores[key]) for key in keys):
            continue
        ours, theirs = np.array([scores[k] for k in keys]), np.array([reference[k] for k in keys])
        top1.append(float(ours.argmax() == theirs.argmax()))
        rhos.append(float(spearmanr(ours, theirs).statistic))
    return float(np.mean(top1)), float(np.mean(rhos))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", default="teacher_engines.md")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    data, candidates = squad_slice(args.questions, args.k)
    questions = data.train
    lm = load_lm()
    rows: list[tuple[str, int, float, dict[Key, float]]] = []  # (engine, passages, seconds, scores)

    for name, precision in (("PyTorch fp32 (reference)", "32-true"), ("PyTorch bf16 (default)", "bf16-mixed")):
        teacher = LMLikelihoodTeacher(lm, num_candidates=args.k, precision=precision)
        start = time.perf_counter()
        scores = teacher_scores(teacher, questions, candidates, data)
        rows.append((name, len(scores), time.perf_counter() - start, scores))

    examples = {ex.key: ex for _, ex in pair_examples(lm, questions, candidates, data, args.k)}
    gguf = PACKAGED_LMS["SmolLM2-135M-Instruct"].gguf(ROOT / ".cache")
    start = time.perf_counter()
    scores = llama_cpp_scores(gguf, examples, threads)
    rows.append(
        (f"llama.cpp in-process (GGUF Q4_1, {threads} threads)", len(scores), time.perf_counter() - start, scores)
    )

    reference, bf16_rate = rows[0][3], rows[1][1] / rows[1][2]
    lines = [
        "# Answer-likelihood scoring on each engine",
        "",
        f"Measured {measured_on()}: `python benchmarks/teacher_engines.py --questions {args.questions} --k {args.k}`. "
        f"{args.questions} SQuAD-open training questions x their BM25 top-{args.k}, SmolLM2-135M-Instruct, "
        "the likelihood teacher's prompts (chat template).",
        "",
        "| engine | passages | passages/s | × bf16 | top-1 agreement with fp32 | Spearman with fp32 (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, passages, seconds, scores in rows:
        top1, rho = agreement(scores, reference, questions)
        rate = passages / seconds
        lines.append(f"| {name} | {passages} | {rate:.2f} | {rate / bf16_rate:.2f} | {top1:.3f} | {rho:.3f} |")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
