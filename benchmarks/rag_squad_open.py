"""End-to-end RAG on SQuAD-open: the reader's EM/F1 from the top-k passages of each retriever, per reader.

A retriever for RAG is judged by the answers a reader gives from what it retrieves. This script answers the
evaluation questions of finished full-scale runs (their data config: SQuAD-open dev, the whole corpus) from
the top-k of BM25 and of each run's retriever (re-searched from the run's saved faiss index, checked against
its metrics.json), with one reader per invocation, and renders one table over every reader answered so far:

    python benchmarks/rag_squad_open.py outputs/bench_squad_open/untrained outputs/bench_squad_open/gold --bm25
    python benchmarks/rag_squad_open.py <same runs> --bm25 --reader pear --pear
    python benchmarks/rag_squad_open.py <same runs> --bm25 --reader finetuned --lm-path <fine-tuned reader folder>

Answers go to ``outputs/bench_rag/<reader>/<retriever>.jsonl`` in chunks, appended as they finish: a killed
run resumes where it stopped, a rerun pays nothing, and a half-written last line is dropped. The settings an
answer file was made with are kept beside it; answering on with other settings is refused. Writes
``benchmarks/results/rag_squad_open.md`` (EM, F1, answer hit@k, seconds per question).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compare_retrievers import rerun
from scipy.stats import ttest_rel
from teacher_setup import ROOT, publish

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.ranking import as_run
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.evaluation.rag import top_passages
from ragdistill.models.lm import LanguageModel
from ragdistill.reader.lm_reader import LMReader, answer_records
from ragdistill.reader.qa import qa_scores
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.quiet import quiet_third_party

logger = logging.getLogger(__name__)

ANSWERS = ROOT / "outputs" / "bench_rag"
CHUNK = 100
"""Questions answered between two appends to the answer file: what a kill can cost at most."""


@dataclass(frozen=True)
class ReaderSpec:
    """How one reader answers; an answer file is only continued with the same spec."""

    label: str
    lm_path: str
    pear: bool
    precision: str
    top_k: int
    questions: int


def rankings(run_dirs: Sequence[Path], bm25: bool, questions: int) -> tuple[RetrievalData, dict[str, Any]]:
    """The shared evaluation data and each retriever's ranked run (``qid -> pid -> score``), BM25 first.

    Raises:
        ValueError: If the runs were evaluated on different questions or corpora.
        SystemExit: If a recomputed ranking does not reproduce the run's recorded R@5.
    """
    data: RetrievalData | None = None
    runs: dict[str, Any] = {}
    for run_dir in run_dirs:
        name, run_data, ranking = rerun(run_dir)  # its gold R@5 checked against its metrics.json
        if data is None:
            data = run_data
        elif [q.id for q in run_data.eval] != [q.id for q in data.eval] or len(run_data.corpus) != len(data.corpus):
            raise ValueError(f"{run_dir} was evaluated on other questions or another corpus than {run_dirs[0]}")
        runs[name] = ranking
    if data is None:
        raise ValueError("give at least one finished run dir: its data config names the evaluation set")
    data.eval = data.eval[:questions]  # the runs were checked on every question; BM25 ranks only these
    if bm25:
        retrieved = BM25Candidates(k=100).fit(data.corpus).retrieve(list(data.eval))
        runs = {"bm25": as_run(retrieved)} | runs
    return data, runs


def load_answers(path: Path, spec: ReaderSpec) -> list[dict[str, Any]]:
    """The records already answered into ``path`` (dropping a half-written last line), after checking the spec."""
    meta = path.with_suffix(".meta.json")
    if meta.exists() and json.loads(meta.read_text()) != asdict(spec):
        raise ValueError(
            f"{path} was answered with {meta.read_text().strip()}, not {asdict(spec)}: use another --reader label "
            "or delete the file"
        )
    atomic_write_text(meta, json.dumps(asdict(spec)))
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: dropping a half-written line after %d answers", path, len(records))
            break
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


def answer_run(
    reader: LMReader, questions: list[Question], passages: list[list[Passage]], path: Path, spec: ReaderSpec
) -> None:
    """Answer the questions not yet in ``path``, appending each chunk's records with their seconds."""
    done = load_answers(path, spec)
    if [r["qid"] for r in done] != [q.id for q in questions[: len(done)]]:
        raise ValueError(f"{path} holds other questions than this evaluation set: delete it")
    for start in range(len(done), len(questions), CHUNK):
        chunk = slice(start, start + CHUNK)
        began = time.perf_counter()
        answers = reader.answer([q.text for q in questions[chunk]], passages[chunk])
        seconds = (time.perf_counter() - began) / len(answers)
        records = answer_records(questions[chunk], passages[chunk], answers)
        with path.open("a") as out:
            out.write("".join(json.dumps(r | {"seconds": seconds}, ensure_ascii=False) + "\n" for r in records))
            out.flush()
            os.fsync(out.fileno())
        logger.info(
            "%s: %d / %d answered (%.2f s per question)", path.name, start + len(answers), len(questions), seconds
        )


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """EM, F1, answer hit among the passages read and seconds per question, over answered records."""
    scored = [r for r in records if r["gold_answers"]]
    scores = qa_scores([r["answer"] for r in scored], [r["gold_answers"] for r in scored])
    return scores | {
        "hit": sum(r["hit"] for r in scored) / len(scored),
        "seconds": sum(r["seconds"] for r in records) / len(records),
        "n": float(len(scored)),
    }


def gold_position(record: dict[str, Any], gold_ids: dict[str, set[str]]) -> int | None:
    """Where the first gold paragraph is among the passages an answer record read (0 = first), or None."""
    gold = gold_ids[record["qid"]]
    return next((i for i, pid in enumerate(record["retrieved_ids"]) if pid in gold), None)


def by_gold_position(records: list[dict[str, Any]], gold_ids: dict[str, set[str]]) -> dict[str, float]:
    """Mean F1 by where the first gold paragraph is among the passages read: first, later, or not read.

    Two retrievers with the same recall can still feed the reader differently: what sits beside the gold
    paragraph (distractors that look relevant) or above it changes the answers. ``gold@1``, ``f1_first``,
    ``f1_later``, ``f1_none`` (NaN where no question falls in the group).
    """
    groups: dict[str, list[float]] = {"first": [], "later": [], "none": []}
    for record in records:
        position = gold_position(record, gold_ids)
        group = "none" if position is None else "first" if position == 0 else "later"
        groups[group].append(record["f1"])
    mean = {name: sum(f1s) / len(f1s) if f1s else float("nan") for name, f1s in groups.items()}
    return {"gold@1": len(groups["first"]) / len(records)} | {f"f1_{name}": value for name, value in mean.items()}


Answers = dict[tuple[str, str], list[dict[str, Any]]]
"""The per-question answer records of each (retriever, reader), in question order."""


def completed(
    top_k: int, questions: int, gold_ids: dict[str, set[str]] | None = None
) -> tuple[dict[str, dict[str, dict[str, float]]], Answers]:
    """``retriever -> reader -> summary`` over every complete answer file under ``outputs/bench_rag``, and the
    per-question answer records of each (retriever, reader).

    Each summary also holds ``p_f1``: a paired two-sided t-test of the per-question F1 against the same
    reader's answers from BM25 (the first row), when BM25 was answered too.
    """
    results: dict[str, dict[str, dict[str, float]]] = {}
    answers: Answers = {}
    f1s: dict[tuple[str, str], list[float]] = {}
    for path in sorted(ANSWERS.glob("*/*.jsonl"), key=lambda p: (p.stem != "bm25", p.stem)):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        spec = json.loads(path.with_suffix(".meta.json").read_text())
        if len(records) == questions and spec["top_k"] == top_k:
            reader = path.parent.name
            results.setdefault(path.stem, {})[reader] = summary(records)
            if gold_ids is not None:
                results[path.stem][reader] |= by_gold_position(records, gold_ids)
            answers[(path.stem, reader)] = records
            f1s[(path.stem, reader)] = [r["f1"] for r in records]
            baseline = f1s.get(("bm25", reader))
            if baseline is not None and path.stem != "bm25":
                results[path.stem][reader]["p_f1"] = float(ttest_rel(f1s[(path.stem, reader)], baseline).pvalue)
    return results, answers


def paired_f1(f1s: dict[tuple[str, str], list[float]], first: tuple[str, str], second: tuple[str, str]) -> str | None:
    """``| ΔF1 | p |`` of ``second`` minus ``first`` (``(retriever, reader)`` keys) on the same questions, or None.

    The per-question F1 pairs up (the same questions in the same order), so a paired two-sided t-test says
    whether the difference is beyond noise.
    """
    a, b = f1s.get(second), f1s.get(first)
    if a is None or b is None:
        return None
    delta = sum(a) / len(a) - sum(b) / len(b)
    return f"{delta:+.3f} | {float(ttest_rel(a, b).pvalue):.2g} |"


def reader_pairs(readers: list[str], f1s: dict[tuple[str, str], list[float]], retrievers: list[str]) -> list[str]:
    """Markdown rows comparing every two readers on the same retriever: did fine-tuning or PEAR change answers?"""
    rows = []
    for i, first in enumerate(readers):
        for second in readers[i + 1 :]:
            for retriever in retrievers:
                if (cells := paired_f1(f1s, (retriever, first), (retriever, second))) is not None:
                    rows.append(f"| {second} − {first} | {retriever} | {cells}")
    return rows


def retriever_pairs(readers: list[str], f1s: dict[tuple[str, str], list[float]], retrievers: list[str]) -> list[str]:
    """Markdown rows comparing every two dense retrievers (BM25 has its p in the main table) for each reader."""
    dense = [r for r in retrievers if r != "bm25"]
    rows = []
    for reader in readers:
        for i, first in enumerate(dense):
            for second in dense[i + 1 :]:
                if (cells := paired_f1(f1s, (first, reader), (second, reader))) is not None:
                    rows.append(f"| {second} − {first} | {reader} | {cells}")
    return rows


def gold_first_pairs(
    readers: list[str],
    answers: Answers,
    retrievers: list[str],
    gold_ids: dict[str, set[str]],
    passage_chars: dict[str, int],
) -> list[str]:
    """Rows comparing every two retrievers for each reader on the questions where *both* read a gold paragraph first.

    "F1 when the gold paragraph is first" differs between retrievers partly because they put it first for
    different questions. On the questions they share, the gold paragraph and its place are the same, so a
    difference in F1 comes from the other passages read; their mean length is shown beside it (a longer
    prompt is harder for a small reader, and the reader's budget cuts long passages).
    """
    rows = []
    for reader in readers:
        for i, first in enumerate(retrievers):
            for second in retrievers[i + 1 :]:
                a, b = answers.get((first, reader)), answers.get((second, reader))
                if a is None or b is None:
                    continue
                both = [
                    (x, y)
                    for x, y in zip(a, b, strict=True)
                    if gold_position(x, gold_ids) == 0 and gold_position(y, gold_ids) == 0
                ]
                if len(both) < 2:
                    continue
                f1_a, f1_b = [x["f1"] for x, _ in both], [y["f1"] for _, y in both]
                chars = [
                    sum(passage_chars[pid] for r in side for pid in r["retrieved_ids"][1:])
                    / max(1, sum(len(r["retrieved_ids"]) - 1 for r in side))
                    for side in ([x for x, _ in both], [y for _, y in both])
                ]
                rows.append(
                    f"| {second} − {first} | {reader} | {len(both)} | {sum(f1_a) / len(both):.3f} → "
                    f"{sum(f1_b) / len(both):.3f} | {float(ttest_rel(f1_b, f1_a).pvalue):.2g} | "
                    f"{chars[0]:.0f} → {chars[1]:.0f} |"
                )
    return rows


def titled(title: str, header: str, rows: list[str]) -> list[str]:
    """A Markdown table of ``| header | ΔF1 | p |`` rows under ``title``; nothing when there are no rows."""
    if not rows:
        return []
    return ["", title, "", f"| {header} | ΔF1 | p |", "|---|---|---|---|", *rows]


def cell(result: dict[str, float]) -> str:
    """``EM | F1`` of one reader and retriever, F1 with its paired p-value against BM25 where there is one."""
    p_value = f" (p={result['p_f1']:.2g})" if "p_f1" in result else ""
    return f"{result['em']:.3f} | {result['f1']:.3f}{p_value}"


def render(
    top_k: int,
    questions: int,
    gold_ids: dict[str, set[str]] | None = None,
    passage_chars: dict[str, int] | None = None,
) -> str:
    """The Markdown report: one row per retriever, EM and F1 per reader, the commands that made them.

    With ``gold_ids`` (question id -> gold paragraph ids) it adds each reader's F1 by where the gold paragraph
    sits among the passages it read, and with ``passage_chars`` (passage id -> length) too, every two
    retrievers compared on the questions where both put the gold paragraph first.
    """
    results, answers = completed(top_k, questions, gold_ids)
    f1s = {key: [r["f1"] for r in records] for key, records in answers.items()}
    readers = sorted({r for by_reader in results.values() for r in by_reader}, key=lambda r: (r != "raw", r))
    lines = [
        f"| retriever | answer hit@{top_k} | " + " | ".join(f"{r} EM | {r} F1" for r in readers) + " |",
        "|---" * (2 + 2 * len(readers)) + "|",
    ]
    for retriever, by_reader in results.items():
        hit = next(iter(by_reader.values()))["hit"]
        cells = [cell(by_reader[r]) if r in by_reader else "– | –" for r in readers]
        lines.append(f"| {retriever} | {hit:.3f} | " + " | ".join(cells) + " |")
    timing = []
    for reader in readers:
        seconds = [by_reader[reader]["seconds"] for by_reader in results.values() if reader in by_reader]
        timing.append(f"- {reader}: {sum(seconds) / len(seconds):.2f} s per question")
    columns = ("gold@1", "f1_first", "f1_later", "f1_none")
    positions = [
        f"| {retriever} | {reader} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |"
        for retriever, by_reader in results.items()
        for reader, r in by_reader.items()
        if "gold@1" in r
    ]
    if positions:
        positions = [
            "",
            f"F1 by where the gold paragraph is among the {top_k} passages read (first, 2nd to {top_k}th, not read):",
            "",
            f"| retriever | reader | gold@1 | F1, gold first | F1, gold 2–{top_k} | F1, no gold |",
            "|---|---|---|---|---|---|",
            *positions,
        ]
    pairs = titled(
        "Reader against reader on the same passages (F1 difference, paired two-sided t-test):",
        "readers | retriever",
        reader_pairs(readers, f1s, list(results)),
    ) + titled(
        "Retriever against retriever for the same reader (F1 difference, paired two-sided t-test):",
        "retrievers | reader",
        retriever_pairs(readers, f1s, list(results)),
    )
    if gold_ids is not None and passage_chars is not None:
        rows = gold_first_pairs(readers, answers, list(results), gold_ids, passage_chars)
        if rows:
            pairs += [
                "",
                "Retriever against retriever on the questions where both put a gold paragraph first (mean F1, "
                f"paired two-sided t-test; mean characters of the passages read beside it, 2nd to {top_k}th):",
                "",
                "| retrievers | reader | questions | F1 | p | characters beside the gold paragraph |",
                "|---|---|---|---|---|---|",
                *rows,
            ]
    commands = [line for r in readers for line in (ANSWERS / r / "command.txt").read_text().splitlines()]
    return "\n".join(
        [
            f"# RAG on SQuAD-open: reader EM/F1 from each retriever's top-{top_k}",
            "",
            f"{questions} dev questions, the whole corpus. Commands (one reader each; the table covers every reader "
            "answered so far):",
            "",
            *[f"    {line}" for line in commands],
            "",
            *lines,
            "",
            f"answer hit@{top_k}: a passage given to the reader contains a gold answer (SQuAD normalisation). EM "
            "and F1: SQuAD's answer normalisation, best over the gold answers; p: paired two-sided t-test of the "
            "per-question F1 against the same reader's answers from BM25. Seconds per question (2 threads):",
            *timing,
            *positions,
            *pairs,
            "",
        ]
    )


def record_command(path: Path, command: str) -> None:
    """Add ``command`` to the reader's command file unless it is there already.

    One reader's answers may come from several invocations (``--only`` one retriever at a time); the report
    lists them all.
    """
    commands = path.read_text().splitlines() if path.exists() else []
    if command not in commands:
        atomic_write_text(path, "\n".join([*commands, command]) + "\n")


def command_line(argv: list[str]) -> str:
    """``argv`` as a command to run from the repository root (paths made relative to it)."""
    parts = [os.path.relpath(Path(a).resolve(), ROOT) if Path(a).exists() else a for a in argv]
    return "python " + " ".join(map(shlex.quote, parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run dirs evaluated on the same questions")
    parser.add_argument("--bm25", action="store_true", help="also answer from BM25's top-k")
    parser.add_argument(
        "--only", nargs="+", help="answer from these retrievers only (bm25, or a run's name); the table covers all"
    )
    parser.add_argument("--reader", default="raw", help="label of this reader in the table and the answer dirs")
    parser.add_argument(
        "--lm-path", default="packaged:SmolLM2-135M-Instruct", help="reader LM: hub id, folder or packaged:"
    )
    parser.add_argument("--pear", action="store_true", help="apply PEAR (conf/pear.yaml defaults, cached)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rag_squad_open.md")
    args = parser.parse_args()
    quiet_third_party()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    spec = ReaderSpec(args.reader, args.lm_path, args.pear, args.precision, args.top_k, args.questions)
    data, runs = rankings(args.runs, args.bm25, args.questions)
    cache = str(ROOT / ".cache" / "ragdistill")
    reader = LMReader(
        LanguageModel(path=args.lm_path, cache_dir=cache), precision=args.precision, pear=args.pear, cache_dir=cache
    )
    questions = list(data.eval)
    (ANSWERS / args.reader).mkdir(parents=True, exist_ok=True)
    record_command(ANSWERS / args.reader / "command.txt", command_line(sys.argv))
    unknown = set(args.only or []) - set(runs)
    if unknown:
        raise SystemExit(f"--only {sorted(unknown)}: not among the retrievers {sorted(runs)}")
    for name, run in runs.items():
        if args.only and name not in args.only:
            continue
        path = ANSWERS / args.reader / f"{name}.jsonl"
        answer_run(reader, questions, top_passages(run, [q.id for q in questions], data, args.top_k), path, spec)
    if reader.pear_result is not None:
        logger.info("PEAR: %s", json.dumps(reader.metrics()))
    chars = {p.id: len(p.text) for p in data.corpus}
    report = render(args.top_k, args.questions, {q.id: set(q.gold_ids) for q in questions}, chars)
    publish(report, args.out)


if __name__ == "__main__":
    main()
