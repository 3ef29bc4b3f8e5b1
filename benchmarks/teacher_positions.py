"""Where in the candidate list a teacher's favourite sits, next to where the gold paragraph sits.

Reads the signals a run left in the teacher-signal cache (no LM is loaded) and prints, per first-stage
rank 1..K, how often the gold paragraph is there and how often the teacher's top-1 is there, plus the
teacher's top-1 gold rate when the gold paragraph is at that rank. An attention teacher whose favourite
piles up at the last ranks (the passages nearest the answer in its prompt) while the gold paragraph sits
at rank 1 is position-biased, not judging content. Assumes the experiments' data and first stage
(SQuAD-open, full corpus, BM25 defaults, shards of 64).

    python benchmarks/teacher_positions.py --cache .cache/ragdistill/teacher_signals/<key> --n-train 1000 \
        --out benchmarks/results/teacher_positions_<teacher>.md
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.schemas import RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.data.squad import load_squad_open
from ragdistill.teachers.cache import SignalCache


def cached_signals(cache_dir: Path, data: RetrievalData, shard_size: int = 64) -> list[TeacherSignal]:
    """The run's signals from one cache key: its shards are re-addressed from the run's questions and BM25
    candidates (the experiments' first stage), so shards other runs left under the same key are not mixed in."""
    cache = SignalCache(cache_dir.parent.parent, cache_dir.name)
    candidates = BM25Candidates().fit(data.corpus).retrieve(data.train)
    signals: list[TeacherSignal] = []
    for start in range(0, len(data.train), shard_size):
        shard_key = cache.shard_key(data.train[start : start + shard_size], candidates, data)
        loaded = cache.load(shard_key)
        if loaded is None:
            raise SystemExit(f"{cache.path(shard_key)} is missing or corrupt: run the experiment (it resumes) first")
        signals.extend(loaded)
    return signals


def position_table(signals: list[TeacherSignal], gold: dict[str, set[str]]) -> str:
    """A Markdown table over first-stage ranks (the signals' candidate order) for signals with gold in the pool."""
    k = max(len(s.candidate_ids) for s in signals)
    gold_at: Counter[int] = Counter()
    top1_at: Counter[int] = Counter()
    hit_when_gold_at: Counter[int] = Counter()
    judged = 0
    for signal in signals:
        ranks = [i for i, pid in enumerate(signal.candidate_ids) if pid in gold.get(signal.qid, set())]
        if not ranks:
            continue
        judged += 1
        best = int(np.argmax(signal.scores))
        gold_at[ranks[0]] += 1
        top1_at[best] += 1
        hit_when_gold_at[ranks[0]] += best in ranks
    rows = ["| first-stage rank | gold paragraph there | teacher's top-1 there | top-1 is gold, given gold there |"]
    rows.append("|---|---|---|---|")
    for rank in range(k):
        given = f"{hit_when_gold_at[rank] / gold_at[rank]:.3f}" if gold_at[rank] else "–"
        rows.append(f"| {rank + 1} | {gold_at[rank] / judged:.3f} | {top1_at[rank] / judged:.3f} | {given} |")
    total = sum(hit_when_gold_at.values()) / judged
    return (
        "\n".join(rows) + f"\n\n{judged} questions whose pool holds the gold paragraph; top-1 is gold for {total:.3f}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="teacher_signals/<key> folder of a run")
    parser.add_argument("--n-train", type=int, default=1000, help="the run's data.n_train")
    parser.add_argument("--seed", type=int, default=42, help="the run's seed")
    parser.add_argument("--out", type=Path, help="also write the table (with the command) to this Markdown file")
    args = parser.parse_args()
    data = load_squad_open(n_train=args.n_train, n_eval=0, seed=args.seed)
    signals = cached_signals(args.cache, data)
    table = position_table(signals, {q.id: set(q.gold_ids) for q in data.train})
    print(table)
    if args.out:
        command = f"python benchmarks/teacher_positions.py --cache {args.cache} --n-train {args.n_train}"
        args.out.write_text(f"# Teacher's top-1 by first-stage rank\n\n```bash\n{command}\n```\n\n{table}\n")


if __name__ == "__main__":
    main()
