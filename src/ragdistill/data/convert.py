"""Write a loaded data set in each format the loaders read: for moving data between tools, and to check the loaders.

Each writer lays out ``data.eval`` (and ``data.train`` where the format has a place for it) with the corpus,
so that the matching ``data=`` loader reads back the same passages and questions. What a format cannot keep
is said here: the TSV formats (DPR, MS MARCO) hold no tabs or line breaks in a text and their loaders trim
fields, so :func:`tsv_safe` turns those into spaces and trims (call it before writing every format, when
the formats are to be compared); BEIR and MS MARCO have no answers, MS MARCO no titles; DPR numbers its
questions (``eval-0``): it has no question ids.

    from ragdistill.data.convert import WRITERS
    overrides = WRITERS["beir"](data, Path("out/beir"))   # -> ["data=beir", "data.path=out/beir", ...]
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragdistill.data.schemas import Passage, Question, RetrievalData

Writer = Callable[[RetrievalData, Path], list[str]]
"""Writes the data under a folder; returns the ``data=`` overrides that load it back."""

_TSV_UNSAFE = re.compile(r"[\t\r\n]+")


def tsv_safe(data: RetrievalData) -> tuple[RetrievalData, int]:
    """The data as a TSV file can hold it, and how many texts changed.

    Tabs and line breaks in a text or title become spaces; surrounding spaces go, as the TSV loaders trim
    every field.
    """
    changed = 0

    def clean(text: str) -> str:
        nonlocal changed
        cleaned = _TSV_UNSAFE.sub(" ", text).strip()
        changed += cleaned != text
        return cleaned

    corpus = [replace(p, text=clean(p.text), title=clean(p.title)) for p in data.corpus]
    questions = {split: [replace(q, text=clean(q.text)) for q in getattr(data, split)] for split in ("train", "eval")}
    return RetrievalData(data.name, corpus, questions["train"], questions["eval"]), changed


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def _question_record(q: Question) -> dict[str, Any]:
    return {"id": q.id, "question": q.text, "answers": list(q.answers), "gold_ids": list(q.gold_ids)}


def _grades(q: Question) -> tuple[tuple[str, int], ...]:
    return q.graded or tuple((pid, 1) for pid in q.gold_ids)


def write_jsonl(data: RetrievalData, folder: Path) -> list[str]:
    """``corpus.jsonl``, ``train.jsonl``, ``eval.jsonl`` (``data=jsonl``)."""
    _write_jsonl(folder / "corpus.jsonl", ({"id": p.id, "text": p.text, "title": p.title} for p in data.corpus))
    _write_jsonl(folder / "eval.jsonl", map(_question_record, data.eval))
    overrides = ["data=jsonl", f"data.corpus_path={folder / 'corpus.jsonl'}", f"data.eval_path={folder / 'eval.jsonl'}"]
    if data.train:
        _write_jsonl(folder / "train.jsonl", map(_question_record, data.train))
    train = f"data.train_path={folder / 'train.jsonl'}" if data.train else "data.train_path=null"
    return [*overrides, train, f"data.name={data.name}"]


def write_beir(data: RetrievalData, folder: Path) -> list[str]:
    """``corpus.jsonl``, ``queries.jsonl``, ``qrels/{test,train}.tsv`` with grades (``data=beir``); answers dropped."""
    _write_jsonl(folder / "corpus.jsonl", ({"_id": p.id, "title": p.title, "text": p.text} for p in data.corpus))
    _write_jsonl(folder / "queries.jsonl", ({"_id": q.id, "text": q.text} for q in [*data.train, *data.eval]))
    for split, questions in (("test", data.eval), ("train", data.train)):
        if questions:
            rows = (f"{q.id}\t{pid}\t{grade}" for q in questions for pid, grade in _grades(q))
            _write_lines(folder / "qrels" / f"{split}.tsv", ["query-id\tcorpus-id\tscore", *rows])
    return ["data=beir", f"data.path={folder}", f"data.name={data.name}"]


def write_msmarco(data: RetrievalData, folder: Path) -> list[str]:
    """``collection.tsv``, ``queries.<split>.tsv``, ``qrels.<split>.tsv`` (``data=msmarco``); no titles or answers."""
    _write_lines(folder / "collection.tsv", (f"{p.id}\t{p.text}" for p in data.corpus))
    for split, questions in (("dev", data.eval), ("train", data.train)):
        if questions:
            _write_lines(folder / f"queries.{split}.tsv", (f"{q.id}\t{q.text}" for q in questions))
            _write_lines(
                folder / f"qrels.{split}.tsv",
                (f"{q.id} 0 {pid} {grade}" for q in questions for pid, grade in _grades(q)),
            )
    return ["data=msmarco", f"data.path={folder}", "data.eval_split=dev", f"data.name={data.name}"]


def _csv_quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _dpr_question(q: Question, passages: dict[str, Passage]) -> dict[str, Any]:
    context = [{"passage_id": pid, "title": passages[pid].title, "text": passages[pid].text} for pid in q.gold_ids]
    negatives = [
        {"passage_id": pid, "title": passages[pid].title, "text": passages[pid].text} for pid in q.negative_ids
    ]
    return {
        "question": q.text,
        "answers": list(q.answers),
        "positive_ctxs": context,
        "negative_ctxs": [],
        "hard_negative_ctxs": negatives,
    }


def write_dpr(data: RetrievalData, folder: Path) -> list[str]:
    """``psgs_w100.tsv`` (texts CSV-quoted, as DPR's writer does where needed), ``<split>.json`` (``data=dpr``)."""
    _write_lines(
        folder / "psgs_w100.tsv",
        ["id\ttext\ttitle", *(f"{p.id}\t{_csv_quoted(p.text)}\t{p.title}" for p in data.corpus)],
    )
    passages = {p.id: p for p in data.corpus}
    folder.mkdir(parents=True, exist_ok=True)
    for split, questions in (("dev", data.eval), ("train", data.train)):
        if questions:
            records = [_dpr_question(q, passages) for q in questions]
            (folder / f"{split}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    train = f"data.train_path={folder / 'train.json'}" if data.train else "data.train_path=null"
    return [
        "data=dpr",
        f"data.passages_path={folder / 'psgs_w100.tsv'}",
        f"data.eval_path={folder / 'dev.json'}",
        train,
        f"data.name={data.name}",
    ]


def write_hf(data: RetrievalData, folder: Path) -> list[str]:
    """The corpus as a ``save_to_disk`` folder, the questions as parquet files (``data=hf``)."""
    import datasets

    corpus = datasets.Dataset.from_list([{"id": p.id, "text": p.text, "title": p.title} for p in data.corpus])
    corpus.save_to_disk(str(folder / "corpus"))
    overrides = ["data=hf", f"data.corpus.path={folder / 'corpus'}", f"data.name={data.name}"]
    for split, questions in (("eval", data.eval), ("train", data.train)):
        if questions:
            datasets.Dataset.from_list([_question_record(q) for q in questions]).to_parquet(
                str(folder / f"{split}.parquet")
            )
            overrides.append(f"data.{split}_questions={{path: parquet, data_files: '{folder / f'{split}.parquet'}'}}")
    return overrides


WRITERS: dict[str, Writer] = {
    "jsonl": write_jsonl,
    "beir": write_beir,
    "msmarco": write_msmarco,
    "dpr": write_dpr,
    "hf": write_hf,
}
"""Format name (its ``data=`` choice) -> writer."""
