"""G2R's data level: an LM writes extra positive units (passages, responses) for training questions.

Generation is as expensive as teacher scoring, so its output is a cached artifact under
``<cache_dir>/generated_units/<key>.jsonl``, keyed by everything that determines it (questions, prompt,
units per question, decoding, the chat model's identity). It is written in chunks to a ``.partial`` file
that an interrupted run resumes from (a truncated last line is reported and regenerated), and renamed into
place once complete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.data.schemas import Passage, Question
from ragdistill.models.chat_model import ChatModel
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.cache_key import config_key
from ragdistill.utils.plain import plain

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped when the stored records change meaning (part of the cache key)."""


@dataclass
class GenerationStats:
    """What generation did: units kept, empty or too-short ones dropped, questions skipped, cache reuse."""

    kept: int = 0
    dropped: int = 0
    skipped_questions: int = 0
    generated: int = 0
    reused: int = 0

    def metrics(self) -> dict[str, float]:
        """The counts as ``g2r/*`` figures for metrics.json."""
        return {f"g2r/units_{name}": float(value) for name, value in vars(self).items()}


class UnitGenerator:
    """Write ``per_question`` units per training question with a chat model, cached and resumable.

    Args:
        chat: The chat model (``complete_many`` over message lists).
        prompt: The user message; ``{question}`` and ``{answer}`` (the first gold answer) are filled in. A
            prompt with ``{answer}`` skips questions that have none (counted).
        per_question: Units per question (> 1 needs sampling: ``params.temperature`` > 0).
        params: Decoding parameters passed to the chat model (``temperature``, ``top_p``, ``seed``, …).
        min_chars: A generation shorter than this (after stripping) is garbage and dropped (counted).
        chunk_questions: Questions generated between two appends to the ``.partial`` file.
        cache_dir: Root of the cache (``<cache_dir>/generated_units``).
    """

    def __init__(
        self,
        chat: ChatModel,
        prompt: str,
        per_question: int = 1,
        params: Mapping[str, Any] | None = None,
        min_chars: int = 20,
        chunk_questions: int = 64,
        cache_dir: str | os.PathLike[str] = ".cache/ragdistill",
    ) -> None:
        if per_question < 1 or chunk_questions < 1:
            raise ValueError(f"per_question and chunk_questions must be >= 1, got {per_question}, {chunk_questions}")
        if "{question}" not in prompt:
            raise ValueError(f"the generation prompt must contain {{question}}, got {prompt!r}")
        self.params: dict[str, Any] = plain(params or {})
        if per_question > 1 and float(self.params.get("temperature", 0.0)) <= 0:
            raise ValueError(
                f"per_question={per_question} with greedy decoding writes the same unit {per_question} times: "
                "set a sampling temperature > 0 (params.temperature)"
            )
        self.chat = chat
        self.prompt = prompt
        self.per_question = per_question
        self.min_chars = min_chars
        self.chunk_questions = chunk_questions
        self.folder = Path(cache_dir) / "generated_units"
        self.stats = GenerationStats()

    def generate(self, questions: Sequence[Question]) -> dict[str, list[Passage]]:
        """The kept units of each question (ids ``g2r:<qid>:<i>``); questions without any are absent."""
        self.stats = GenerationStats()
        todo = [q for q in questions if "{answer}" not in self.prompt or q.answers]
        self.stats.skipped_questions = len(questions) - len(todo)
        if self.stats.skipped_questions:
            logger.warning("G2R: %d questions lack the answer the prompt needs; skipped", self.stats.skipped_questions)
        final = self.folder / f"{self._key(todo)}.jsonl"
        partial = final.with_suffix(".partial.jsonl")
        if final.exists():
            try:
                records = _read_records(final, self.per_question)
                self.stats.reused = len(records)
                logger.info("Reusing %d generated units <%s>", len(records), final)
                return self._units(records)
            except ValueError as error:
                logger.warning("%s; generating the units again", error)
                final.unlink()
        records = _read_records(partial, self.per_question, tolerate_tail=True)
        self.stats.reused = len(records)
        records = self._generate_missing(todo, records, partial)
        os.replace(partial, final)
        return self._units(records)

    def _generate_missing(self, questions: list[Question], done: list[dict[str, Any]], partial: Path) -> list[dict]:
        """Generate the questions not yet in ``partial`` chunk by chunk, appending each chunk durably."""
        finished = {r["qid"] for r in done}
        missing = [q for q in questions if q.id not in finished]
        if done:
            logger.info("Resuming generation: %d questions done, %d to go", len(finished), len(missing))
        partial.parent.mkdir(parents=True, exist_ok=True)
        _rewrite(partial, done)  # drops a truncated tail line before appending
        records = list(done)
        for start in range(0, len(missing), self.chunk_questions):
            chunk = missing[start : start + self.chunk_questions]
            requests = [self._messages(q) for q in chunk for _ in range(self.per_question)]
            texts = self.chat.complete_many(
                requests, description=f"G2R units {start + len(chunk)}/{len(missing)}", **self.params
            )
            self.stats.generated += len(texts)
            rows = [
                {"qid": q.id, "i": i, "text": texts[k * self.per_question + i]}
                for k, q in enumerate(chunk)
                for i in range(self.per_question)
            ]
            with partial.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                handle.flush()
                os.fsync(handle.fileno())
            records += rows
        return records

    def _units(self, records: list[dict[str, Any]]) -> dict[str, list[Passage]]:
        units: dict[str, list[Passage]] = {}
        for row in records:
            text = str(row["text"]).strip()
            if len(text) < self.min_chars:
                self.stats.dropped += 1
                continue
            units.setdefault(row["qid"], []).append(Passage(f"g2r:{row['qid']}:{row['i']}", text))
        self.stats.kept = sum(len(v) for v in units.values())
        if self.stats.dropped:
            logger.warning(
                "G2R: dropped %d of %d generated units shorter than %d characters (empty or garbage)",
                self.stats.dropped,
                len(records),
                self.min_chars,
            )
        return units

    def _messages(self, question: Question) -> list[dict[str, str]]:
        answer = question.answers[0] if question.answers else ""
        return [{"role": "user", "content": self.prompt.format(question=question.text, answer=answer)}]

    def _key(self, questions: list[Question]) -> str:
        return config_key(
            {
                "format": FORMAT_VERSION,
                "prompt": self.prompt,
                "per_question": self.per_question,
                "params": self.params,
                "chat": self.chat.identity(),
                "questions": [[q.id, q.text, list(q.answers)] for q in questions],
            }
        )


def _read_records(path: Path, per_question: int, tolerate_tail: bool = False) -> list[dict[str, Any]]:
    """Records of a units file; a bad last line of a ``.partial`` file is a crash mid-write and is dropped.

    Only questions with all ``per_question`` units are kept (the others are generated again).

    Raises:
        ValueError: A bad line elsewhere (the file is corrupt).
    """
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not {"qid", "i", "text"} <= row.keys():
                raise ValueError("not a unit record")
        except ValueError as error:
            if tolerate_tail and number == len(lines):
                logger.warning("Generated units <%s>: line %d is truncated (crash mid-write); redone", path, number)
                break
            raise ValueError(f"generated units file <{path}> line {number} is corrupt ({error})") from None
        records.append(row)
    count: dict[str, int] = {}
    for row in records:
        count[row["qid"]] = count.get(row["qid"], 0) + 1
    return [row for row in records if count[row["qid"]] == per_question]


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
