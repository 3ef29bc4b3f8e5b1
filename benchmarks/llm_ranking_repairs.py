"""How often a listwise LLM ranking (stage 0 of Intermediate Distillation) needs repair or is dropped.

A black-box LLM gives only text ("[2] > [1] > ..."); `teacher/source=llm_ranking` parses it and repairs
what it can (`teachers/ranking_output.py`). This script measures, on SQuAD training questions and their BM25
top-K, how many answers were used as written, repaired (duplicate, out-of-range or missing ids) or dropped,
how often the ranked order is just the order shown (the first stage's), and the teacher's top-1 gold rate
next to BM25's own, with the LM on this machine or a served one:

    python benchmarks/llm_ranking_repairs.py --questions 64                  # packaged SmolLM2, greedy
    python benchmarks/llm_ranking_repairs.py --questions 64 --lm-path <fine-tuned reader folder>
    python benchmarks/llm_ranking_repairs.py --questions 64 --base-url http://127.0.0.1:8080/v1 --model smollm2
    python benchmarks/llm_ranking_repairs.py --questions 64 --answers outputs/llm_ranking_answers.jsonl  # every answer

Writes ``benchmarks/results/llm_ranking_repairs.md`` (or ``--out``) with a few raw answers, and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from teacher_setup import ROOT, load_lm, publish, shown_path, squad_slice

from ragdistill.data.signal import TeacherSignal
from ragdistill.evaluation.teacher_quality import teacher_quality
from ragdistill.models.chat_api import ChatClient
from ragdistill.models.chat_model import ChatModel
from ragdistill.models.local_chat import LocalChat
from ragdistill.teachers.llm_ranking import ListwiseRankingTeacher
from ragdistill.teachers.ranking_output import extract_ids, parse_ranking
from ragdistill.utils.atomic import atomic_write_text

EXAMPLES = 3
"""Raw answers quoted in the report: what the parser had to read."""


class RecordingChat:
    """A chat model that keeps every answer it returns (for the report's examples); otherwise the wrapped one."""

    def __init__(self, chat: ChatModel) -> None:
        self.chat = chat
        self.answers: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chat, name)

    def complete_many(self, requests: Sequence[Any], description: str = "", **params: Any) -> list[str]:
        answers = self.chat.complete_many(requests, description, **params)
        self.answers += answers
        return answers

    def identity(self) -> dict[str, str]:
        return self.chat.identity()


def kept_shown_order(signals: list[TeacherSignal]) -> float:
    """Share of rankings identical to the order the candidates were shown in (BM25's): nothing learned."""
    same = [bool(np.all(np.diff(s.scores) < 0)) for s in signals]  # scores are K - position, shown order = K..1
    return float(np.mean(same)) if same else float("nan")


def write_answers(path: Path, answers: list[str], k: int) -> None:
    """One JSON line per raw answer (in request order): the text, the ids read from it and the repair made."""
    lines = []
    for answer in answers:
        parsed = parse_ranking(answer, k)
        record = {"answer": answer, "ids": extract_ids(answer), **asdict(parsed), "repaired": parsed.repaired}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--lm-path", help="local LM (a transformers folder or hub id); default: packaged SmolLM2")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint instead of a local LM")
    parser.add_argument("--model", help="the served model's name (with --base-url)")
    parser.add_argument("--out", default="llm_ranking_repairs.md", help="file name under benchmarks/results/")
    parser.add_argument("--answers", type=Path, help="also write every raw answer and how it parsed (JSONL)")
    args = parser.parse_args()
    if args.base_url and not args.model:
        parser.error("--base-url needs --model (the served model's name)")
    data, candidates = squad_slice(args.questions, args.k)
    questions = data.train
    chat: ChatModel
    if args.base_url:
        chat = ChatClient(args.base_url, args.model, cache_dir=str(ROOT / ".cache" / "ragdistill" / "chat_responses"))
        llm = f"`{args.model}` served at {args.base_url}"
        generation: dict[str, Any] = {"temperature": 0, "max_tokens": 128}
    else:
        chat = LocalChat(load_lm(args.lm_path))  # conf/teacher/chat/local.yaml: greedy, float32, 128 new tokens
        llm = "SmolLM2-135M-Instruct" if args.lm_path is None else f"`{shown_path(args.lm_path)}`"
        generation = {}
    recording = RecordingChat(chat)
    teacher = ListwiseRankingTeacher(recording, num_candidates=args.k, generation=generation)
    start = time.perf_counter()
    try:
        signals = teacher.score(questions, candidates, data)
    finally:
        if isinstance(chat, ChatClient):
            chat.close()  # its HTTP connections and worker threads
    seconds = time.perf_counter() - start
    counts = teacher.metrics()
    quality = teacher_quality(signals, questions, data, candidates)
    outputs = int(counts["teacher/llm_outputs"])
    repaired, dropped = int(counts["teacher/llm_repaired"]), int(counts["teacher/llm_dropped"])
    command = f"python benchmarks/llm_ranking_repairs.py --questions {args.questions} --k {args.k}"
    command += f" --lm-path {shown_path(args.lm_path)}" if args.lm_path else ""
    command += f" --base-url {args.base_url} --model {args.model}" if args.base_url else ""
    command += f" --out {args.out}" if args.out != "llm_ranking_repairs.md" else ""
    examples = [f"    {answer.strip()[:200]!r}" for answer in recording.answers[:EXAMPLES]]
    if args.answers:
        write_answers(args.answers, recording.answers, args.k)
    report = "\n".join(
        [
            f"# Listwise LLM ranking ({llm}): repaired and dropped answers",
            "",
            f"Command: `{command}` ({len(questions)} SQuAD training questions, BM25 top-{args.k} from a "
            f"5,000-paragraph SQuAD-open slice holding every gold paragraph, RankGPT's prompt, one window; "
            f"{torch.get_num_threads()} CPU threads).",
            "",
            "| answers | used as written | repaired | dropped | duplicate ids | out-of-range ids | missing ids "
            "| kept the shown order | top-1 is gold | BM25 top-1 is gold | s per question |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {outputs} | {outputs - repaired - dropped} | {repaired} | {dropped} "
            f"| {int(counts['teacher/llm_duplicate_ids'])} | {int(counts['teacher/llm_out_of_range_ids'])} "
            f"| {int(counts['teacher/llm_missing_ids'])} | {kept_shown_order(signals):.3f} "
            f"| {quality.get('teacher/top1_gold', float('nan')):.3f} "
            f"| {quality.get('teacher/first_stage_top1_gold', float('nan')):.3f} | {seconds / len(questions):.2f} |",
            "",
            "Repaired: used after dropping repeated or out-of-range ids and appending missing ones in the shown "
            "order; dropped: no valid id, the question keeps no signal. Missing ids are summed over used answers. "
            "Kept the shown order: the parsed ranking equals BM25's. top-1 is gold: among questions whose "
            "candidates hold the gold paragraph.",
            "",
            f"The first {len(examples)} raw answers:",
            "",
            *examples,
        ]
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()
