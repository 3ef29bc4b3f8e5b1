"""The teacher-signal cache: score once, reuse across runs and sweeps (docs/architecture.md, content-addressed stages).

Layout under ``paths.cache_dir``::

    teacher_signals/<key>/info.json                what made the key, for people browsing the cache
    teacher_signals/<key>/shard-<shard_key>.json   one finished shard of signals
    teacher_signals/<key>/shard-<shard_key>.partial.json   the questions of an unfinished shard scored so far

``key`` is :func:`config_key` of the resolved config that determines the signal (data, candidates,
teacher, LM, checkpoint) plus :data:`CACHE_FORMAT_VERSION`. Each shard is addressed by its content
(:meth:`SignalCache.shard_key`: questions, their candidates and the candidates' text), so a changed
question or passage misses only the shards that contain it. Shards are written atomically right after
they are scored, and inside a shard every ``save_every`` passages to its partial file, so an interrupted
run resumes from its finished shards and goes on inside the shard it was scoring; a corrupt or truncated
shard or partial file is reported, deleted and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.runtime.distributed import is_global_zero, world
from ragdistill.teachers.base import Teacher
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.cache_key import (
    CACHE_FORMAT_VERSION,
    canonical,
    config_key,
    sha256_json,
)

logger = logging.getLogger(__name__)

DEFAULT_SHARD_PASSAGES = 240
"""Passages (questions x the candidates the teacher judges) per shard, the ``teacher_shard_passages`` default.

A kill loses the shard in progress: at ~4 passages/s, SmolLM2's likelihood scoring on 2 CPU cores, 240
passages is about a minute. The fixed 64 questions it replaces lost up to 640 passages (~3 min, 4.4 min
measured with longer passages) with an LM teacher judging 10 candidates."""

DEFAULT_SAVE_EVERY_PASSAGES = 120
"""Passages between saves of an unfinished shard's progress, the ``teacher_save_every_passages`` default: about
30 s of SmolLM2 likelihood scoring on 2 CPU cores, one extra teacher call per default shard."""

SHARD_KEY_HEX_CHARS = 32
"""Length of a shard key: 128 bits, as shards are far more numerous than configs."""

_SAFE_NAME = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z_.-]*$")


@dataclass
class CacheStats:
    """What :func:`score_with_cache` reused and computed.

    Attributes:
        shards_total: Shards the questions were split into (1 without a cache, 0 without questions).
        shards_reused: Shards loaded from the cache.
        shards_scored: Shards the teacher scored in this call.
        shards_corrupt: Shard files found corrupt (reported, deleted and rescored).
        seconds_scoring: Wall time spent inside ``teacher.score``.
    """

    shards_total: int = 0
    shards_reused: int = 0
    shards_scored: int = 0
    shards_corrupt: int = 0
    seconds_scoring: float = 0.0

    def metrics(self) -> dict[str, float]:
        """``teacher/cache_*`` figures for the loggers."""
        return {
            "teacher/cache_shards_total": float(self.shards_total),
            "teacher/cache_shards_reused": float(self.shards_reused),
            "teacher/cache_shards_scored": float(self.shards_scored),
            "teacher/cache_shards_corrupt": float(self.shards_corrupt),
            "runtime/teacher_scoring_s": round(self.seconds_scoring, 2),
        }


class _CorruptShard(Exception):
    """A shard file that must not be used; the message says what is wrong with it."""


class SignalCache:
    """Store teacher signals under ``root/teacher_signals/<key>/``, one checksummed file per shard.

    A shard file is a one-line JSON header (format version, cache and shard key, payload length and
    sha256) followed by the JSON payload: the ids of the questions the shard was asked about and one
    record per signal (``qid``, ``candidate_ids``, ``scores`` with ``-Infinity`` for no opinion,
    ``positive_ids``, ``diagnostics``). Questions asked but without a signal were dropped by the teacher;
    the shard remembers them, so a rerun does not score them again.

    Args:
        root: The cache root (``paths.cache_dir``).
        key: The cache key, usually :func:`config_key` of what determines the signal.
        parts: The parts that made ``key``, recorded in ``info.json`` for people browsing the cache.

    Attributes:
        corrupt: How many corrupt shard files this object has found so far.
    """

    def __init__(self, root: str | Path, key: str, *, parts: Sequence[Any] | None = None) -> None:
        if not _SAFE_NAME.match(key):
            raise ValueError(f"cache key {key!r} is not a plain file name (letters, digits, '_', '-', '.')")
        self.key = key
        self.dir = Path(root) / "teacher_signals" / key
        self.parts = None if parts is None else canonical(list(parts))
        self.corrupt = 0

    @classmethod
    def from_parts(cls, root: str | Path, *parts: Any) -> SignalCache:
        """Build the cache keyed by :func:`config_key` of ``parts``, recording them in ``info.json``."""
        return cls(root, config_key(*parts), parts=parts)

    def __repr__(self) -> str:
        return f"SignalCache(<key={self.key}>, dir={str(self.dir)!r})"

    def shard_key(
        self, questions: Sequence[Question], candidates: Mapping[str, RankedList], data: RetrievalData
    ) -> str:
        """Return the content address of one shard: what the teacher sees when it scores these questions.

        Hashes the cache key and, per question in order: id, text, answers, gold ids, labelled negatives (where
        there are any), and its candidate ids
        each with a hash of the passage's title and text. First-stage scores are left out: teachers judge
        passages, not retrieval scores, and float noise in a dense retriever would otherwise miss the cache.
        """
        text_hashes: dict[str, str | None] = {}

        def passage_hash(pid: str) -> str | None:
            if pid not in text_hashes:
                try:
                    passage = data.passage(pid)
                except KeyError:
                    text_hashes[pid] = None  # the teacher reports unknown ids if it needs their text
                else:
                    text_hashes[pid] = sha256_json([passage.title, passage.text])
            return text_hashes[pid]

        content = [
            {
                "id": q.id,
                "text": q.text,
                "answers": list(q.answers),
                "gold_ids": list(q.gold_ids),
                # only when there are any, so the shards of data without labelled negatives keep their keys
                **({"negative_ids": list(q.negative_ids)} if q.negative_ids else {}),
                "candidates": (
                    [[pid, passage_hash(pid)] for pid in candidates[q.id].ids] if q.id in candidates else None
                ),
            }
            for q in questions
        ]
        return sha256_json({"key": self.key, "questions": content})[:SHARD_KEY_HEX_CHARS]

    def path(self, shard_key: str, *, partial: bool = False) -> Path:
        """The file of shard ``shard_key``, or of its progress so far (``partial``)."""
        if not _SAFE_NAME.match(shard_key):
            raise ValueError(f"shard key {shard_key!r} is not a plain file name")
        return self.dir / f"shard-{shard_key}{'.partial' if partial else ''}.json"

    @contextmanager
    def claim(self, shard_key: str) -> Iterator[list[TeacherSignal] | None]:
        """Hold the shard's lock while it is scored; yield its signals if another process stored them meanwhile.

        Two jobs of a parallel multirun that need the same shard (a sweep over losses shares one teacher) must
        not both score it: the first takes ``shard-<key>.lock`` and scores, the second waits on the lock, then
        finds the shard stored and reuses it. ``filelock`` releases a lock whose holder died, so a killed job
        leaves nothing to clean up. Not taken inside a started distributed group, whose ranks score together.
        """
        if world()[1] > 1:
            yield None
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.dir / f"shard-{shard_key}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.info("Shard %s is being scored by another run; waiting for it", shard_key[:8])
            lock.acquire()
        try:
            yield self.load(shard_key)
        finally:
            lock.release()

    def load(self, shard_key: str) -> list[TeacherSignal] | None:
        """Return the stored signals of a shard, or None when it is missing or corrupt.

        A corrupt file (unreadable, truncated, failing its checksum, of another format version, or holding
        invalid signals) is reported with ``logger.warning`` naming the file and the problem, deleted and
        counted in :attr:`corrupt`; the caller then rescores the shard.
        """
        loaded = self._read(self.path(shard_key), shard_key)
        return None if loaded is None else loaded[1]

    def load_partial(self, shard_key: str) -> tuple[list[str], list[TeacherSignal]] | None:
        """Return the ids asked so far and their signals of an unfinished shard, or None (missing or corrupt)."""
        return self._read(self.path(shard_key, partial=True), shard_key)

    def _read(self, path: Path, shard_key: str) -> tuple[list[str], list[TeacherSignal]] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._discard(path, f"unreadable ({exc})")
            return None
        try:
            return _decode_shard(raw, self.key, shard_key)
        except _CorruptShard as exc:
            self._discard(path, str(exc))
            return None

    def save(
        self,
        shard_key: str,
        signals: Sequence[TeacherSignal],
        *,
        question_ids: Sequence[str] | None = None,
        partial: bool = False,
    ) -> Path:
        """Write a shard atomically and return its path; a finished shard deletes its partial file.

        Args:
            shard_key: From :meth:`shard_key`.
            signals: The teacher's signals for the shard; may be fewer than its questions.
            question_ids: The ids the teacher was asked about (default: those of ``signals``); those without
                a signal are recorded as dropped.
            partial: Write the progress of an unfinished shard (:meth:`load_partial` reads it back).
        """
        qids = [s.qid for s in signals] if question_ids is None else list(question_ids)
        stray = {s.qid for s in signals} - set(qids)
        if stray:
            raise ValueError(f"signals for questions {sorted(stray)} that the shard was not asked about")
        payload = {
            "question_ids": qids,
            "signals": [
                {
                    "qid": s.qid,
                    "candidate_ids": list(s.candidate_ids),
                    # float32 -> float64 is exact and JSON round-trips float64 exactly; -inf becomes -Infinity.
                    "scores": [float(x) for x in s.scores],
                    "positive_ids": list(s.positive_ids),
                    "diagnostics": {str(k): float(v) for k, v in s.diagnostics.items()},
                }
                for s in signals
            ],
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        body_bytes = body.encode("utf-8")
        header = {
            "format": CACHE_FORMAT_VERSION,
            "key": self.key,
            "shard": shard_key,
            "bytes": len(body_bytes),
            "sha256": hashlib.sha256(body_bytes).hexdigest(),
        }
        self._write_info()
        path = self.path(shard_key, partial=partial)
        atomic_write_text(path, json.dumps(header, separators=(",", ":")) + "\n" + body)
        if not partial:
            self.path(shard_key, partial=True).unlink(missing_ok=True)
        return path

    def _write_info(self) -> None:
        info = self.dir / "info.json"
        if info.exists():
            return
        record = {
            "key": self.key,
            "format_version": CACHE_FORMAT_VERSION,
            "parts": self.parts,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_text(info, json.dumps(record, indent=2, allow_nan=True) + "\n")

    def _discard(self, path: Path, problem: str) -> None:
        logger.warning("Corrupt teacher cache shard %s: %s; deleting it and scoring the shard again", path, problem)
        self.corrupt += 1
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("Could not delete %s (%s); it will be overwritten", path, exc)


def _decode_shard(raw: bytes, key: str, shard_key: str) -> tuple[list[str], list[TeacherSignal]]:
    """Parse and verify a shard file's bytes into (ids asked, signals); raise :class:`_CorruptShard` if wrong."""
    head, newline, body = raw.partition(b"\n")
    if not newline:
        raise _CorruptShard(f"truncated: no complete header line ({len(raw)} bytes)")
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _CorruptShard(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise _CorruptShard("header is not a JSON object")
    if header.get("format") != CACHE_FORMAT_VERSION:
        raise _CorruptShard(f"format version {header.get('format')!r}, expected {CACHE_FORMAT_VERSION}")
    if header.get("key") != key or header.get("shard") != shard_key:
        raise _CorruptShard(f"holds shard {header.get('key')}/{header.get('shard')}, not {key}/{shard_key}")
    if len(body) != header.get("bytes"):
        raise _CorruptShard(f"truncated: payload has {len(body)} of {header.get('bytes')} bytes")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise _CorruptShard("checksum mismatch: the payload changed after it was written")
    try:
        payload = json.loads(body)
        asked = payload["question_ids"]
        if not isinstance(asked, list):
            raise TypeError(f"question_ids is a {type(asked).__name__}, not a list")
        signals = [
            TeacherSignal(
                qid=r["qid"],
                candidate_ids=list(r["candidate_ids"]),
                scores=np.array(r["scores"], dtype=np.float64).astype(np.float32),
                positive_ids=tuple(r["positive_ids"]),
                diagnostics={str(k): float(v) for k, v in r["diagnostics"].items()},
            )
            for r in payload["signals"]
        ]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _CorruptShard(f"invalid payload ({type(exc).__name__}: {exc})") from None
    stray = {s.qid for s in signals} - set(asked)
    if stray:
        raise _CorruptShard(f"signals for questions {sorted(stray)} the shard was not asked about")
    return [str(qid) for qid in asked], signals


def _checked(scored: list[TeacherSignal], shard: Sequence[Question], name: str) -> list[TeacherSignal]:
    """``scored``, refused if the teacher answered questions it was not asked about."""
    stray = {s.qid for s in scored} - {q.id for q in shard}
    if stray:
        raise ValueError(f"teacher <{name}> returned signals for questions {sorted(stray)} it was not asked about")
    return scored


def _stored(
    cache: SignalCache, key: str, scored: list[TeacherSignal], shard: Sequence[Question], *, partial: bool = False
) -> bool:
    """Store a scored shard or its progress (rank zero only); False when the cache cannot be written (said once)."""
    if not is_global_zero():  # every rank of a started group holds the same signals; one writes
        return True
    try:
        cache.save(key, scored, question_ids=[q.id for q in shard], partial=partial)
    except OSError as exc:
        # The signals are in memory; losing the cache entry costs time on a later run, not this run.
        logger.warning(
            "Could not write teacher cache shard %s (%s); keeping this run's signals in memory only, "
            "so a rerun will score them again",
            cache.path(key, partial=partial),
            exc,
        )
        return False  # a full or read-only disk stays so: the caller stops trying
    return True


def passages_judged(teacher: Teacher, question: Question, candidates: Mapping[str, RankedList]) -> int:
    """How many passages ``teacher`` judges for ``question``: its candidates, at most its ``num_candidates``."""
    ranked = candidates.get(question.id)
    pool = len(ranked.ids) if ranked is not None else 0
    limit = getattr(teacher, "num_candidates", None)
    return min(pool, limit) if isinstance(limit, int) else pool


def plan_shards(questions: Sequence[Question], sizes: Sequence[int], shard_passages: int) -> list[list[Question]]:
    """Split ``questions`` in order into shards of about ``shard_passages`` passages (``sizes`` per question).

    A shard closes once it holds ``shard_passages`` passages or more; a question is never split, so one
    with a larger pool gets a shard of its own. The plan depends only on the questions, their pools and the
    setting, so a rerun of the same command finds the same shards.
    """
    shards: list[list[Question]] = []
    current: list[Question] = []
    held = 0
    for question, size in zip(questions, sizes, strict=True):
        current.append(question)
        held += max(size, 1)  # a question without candidates still costs a call
        if held >= shard_passages:
            shards.append(current)
            current, held = [], 0
    if current:
        shards.append(current)
    return shards


def _score_shard(
    teacher: Teacher,
    shard: Sequence[Question],
    candidates: dict[str, RankedList],
    data: RetrievalData,
    cache: SignalCache,
    key: str,
    save_every: int | None,
    writable: bool,
) -> tuple[list[TeacherSignal], bool]:
    """Score one shard in steps of ``save_every`` passages, saving the progress after each; (signals, writable).

    ``writable`` False (an earlier write failed): the steps are the same, their progress is not saved.

    A partial file an interrupted run left is read first and only the questions it lacks are scored. The
    steps are planned like shards (:func:`plan_shards`, greedy in question order), so the steps left after a
    resume are the ones an uninterrupted run takes there: the teacher sees the same batches, and the
    finished shard is the same. Inside a distributed group the ranks score together and keep no progress
    file (they could not agree on reading one).
    """
    name = type(teacher).__name__
    keeps_progress = save_every is not None and world()[1] == 1
    asked, scored = (cache.load_partial(key) if keeps_progress else None) or ([], [])
    if asked:
        logger.info("Shard %s: going on after %d of its %d questions", key[:8], len(asked), len(shard))
    already = set(asked)
    remaining = [q for q in shard if q.id not in already]
    if save_every is None:
        steps = [remaining]
    else:
        steps = plan_shards(remaining, [passages_judged(teacher, q, candidates) for q in remaining], save_every)
    for n, step in enumerate(steps, 1):
        scored += _checked(teacher.score(step, candidates, data), step, name)
        asked += [q.id for q in step]
        if keeps_progress and writable and n < len(steps):
            done = set(asked)
            writable = _stored(cache, key, scored, [q for q in shard if q.id in done], partial=True)
    order = {q.id: i for i, q in enumerate(shard)}
    return sorted(scored, key=lambda signal: order[signal.qid]), writable


def score_with_cache(
    teacher: Teacher,
    questions: Sequence[Question],
    candidates: dict[str, RankedList],
    data: RetrievalData,
    cache: SignalCache | None,
    shard_size: int = 64,
    *,
    shard_passages: int | None = None,
    save_every: int | None = None,
) -> tuple[list[TeacherSignal], CacheStats]:
    """Score ``questions`` with ``teacher``, reusing finished shards from ``cache`` and saving new ones.

    Questions are split in order into shards of ``shard_passages`` passages (:func:`plan_shards`), or of
    ``shard_size`` questions when that is None; each shard is loaded if finished, else scored and saved at
    once, so a crash loses at most the shard in progress. Without a cache all questions go to the teacher
    in one call.

    Args:
        teacher: The teacher; its ``score`` is called once per missing shard.
        questions: The training questions to score.
        candidates: First-stage candidates per question id.
        data: The data set (the teacher reads passages from it).
        cache: Where finished shards live; ``None`` scores everything without caching.
        shard_size: Questions per shard (a trade-off between resume granularity and file count).
        shard_passages: Passages per shard instead (``teacher_shard_passages``; what a kill can cost is
            passages to score, not questions).
        save_every: Inside a shard, save the progress every this many passages and go on from it after a
            kill (``teacher_save_every_passages``); None scores each shard in one call.

    Returns:
        The signals in question order (questions the teacher dropped are absent) and what was reused.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if shard_passages is not None and shard_passages < 1:
        raise ValueError(f"teacher_shard_passages must be >= 1, got {shard_passages}")
    if save_every is not None and save_every < 1:
        raise ValueError(f"teacher_save_every_passages must be >= 1, got {save_every}")
    questions = list(questions)
    name = type(teacher).__name__
    stats = CacheStats()
    if not questions:
        return [], stats
    if cache is None:
        logger.info("Scoring %d questions with <%s> (no teacher cache)", len(questions), name)
        start = time.perf_counter()
        signals = teacher.score(questions, candidates, data)
        stats.seconds_scoring = time.perf_counter() - start
        stats.shards_total = stats.shards_scored = 1
        return signals, stats

    if shard_passages is None:
        shards = [questions[i : i + shard_size] for i in range(0, len(questions), shard_size)]
    else:
        sizes = [passages_judged(teacher, q, candidates) for q in questions]
        shards = plan_shards(questions, sizes, shard_passages)
    keys = [cache.shard_key(shard, candidates, data) for shard in shards]
    corrupt_before = cache.corrupt
    done = [cache.load(key) for key in keys]
    stats.shards_total = len(shards)
    stats.shards_reused = sum(d is not None for d in done)
    stats.shards_corrupt = cache.corrupt - corrupt_before
    short_key = f"{cache.key[:8]}…"
    if stats.shards_reused:
        logger.info("Reusing teacher cache <key=%s>: %d/%d shards", short_key, stats.shards_reused, len(shards))
    else:
        logger.info("Teacher cache <key=%s> has none of %d shards (%s)", short_key, len(shards), cache.dir)
    missing = [i for i, d in enumerate(done) if d is None]
    if missing:
        n_missing = sum(len(shards[i]) for i in missing)
        logger.info("Scoring %d shards (%d questions) with <%s>", len(missing), n_missing, name)
    writable = True
    for i in missing:
        with cache.claim(keys[i]) as stored:
            if stored is not None:  # another run of a parallel sweep scored it while this one waited
                done[i] = stored
                stats.shards_reused += 1
                continue
            start = time.perf_counter()
            scored, writable = _score_shard(teacher, shards[i], candidates, data, cache, keys[i], save_every, writable)
            stats.seconds_scoring += time.perf_counter() - start
            stats.shards_scored += 1
            writable = writable and _stored(cache, keys[i], scored, shards[i])
            done[i] = scored
    signals = [s for shard_signals in done for s in shard_signals or ()]
    if missing:
        logger.info(
            "Teacher <%s> scored %d shards in %.1f s; %d signals in all",
            name,
            stats.shards_scored,
            stats.seconds_scoring,
            len(signals),
        )
    return signals, stats
