import dataclasses
import json
import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ragdistill.data.fixture import load_fixture
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import NO_OPINION, TeacherSignal
from ragdistill.teachers.base import Teacher
from ragdistill.teachers.cache import (
    DEFAULT_SAVE_EVERY_PASSAGES,
    DEFAULT_SHARD_PASSAGES,
    CacheStats,
    SignalCache,
    plan_shards,
    score_with_cache,
)
from ragdistill.teachers.gold import GoldTeacher
from ragdistill.utils.cache_key import CACHE_FORMAT_VERSION, RUNTIME_KEYS, config_key

CACHE_LOGGER = "ragdistill.teachers.cache"
TEACHER_CFG = {"_target_": "tests.FakeTeacher", "temperature": 1.0, "lm": {"name": "tiny", "batch_size": 8}}
QIDS = [f"q{i}" for i in range(10)]
SHARDS = [QIDS[0:3], QIDS[3:6], QIDS[6:9], QIDS[9:10]]  # shard_size=3


class CountingTeacher(Teacher):
    """Scores from passage lengths; records every call; drops chosen questions; can crash on a chosen call."""

    def __init__(self, scale: float = 1.0, drop: tuple[str, ...] = (), fail_on_call: int | None = None) -> None:
        self.scale = scale
        self.drop = set(drop)
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    def score(self, questions, candidates, data):
        self.calls.append([q.id for q in questions])
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("teacher crashed")
        signals = []
        for q in questions:
            if q.id in self.drop:
                continue
            ids = candidates[q.id].ids
            # thirds are not exact in binary: checks the float32 scores survive the file bit for bit
            scores = np.array([self.scale * len(data.passage(pid).text) / 3 for pid in ids], dtype=np.float32)
            scores[-1] = NO_OPINION
            diagnostics = {"answer_mass": 1 / 7, "question_len": float(len(q.text))}
            signals.append(TeacherSignal(q.id, ids, scores, positive_ids=(ids[0],), diagnostics=diagnostics))
        return signals


def _data(passage_edits: dict[str, str] | None = None, question_edits: dict | None = None) -> RetrievalData:
    """Ten questions; q<i> has candidates [p<i>, s1, s2], so p<i> belongs to one shard and s1 to all."""
    texts = {f"p{i}": f"Passage number {i} says something about topic {i}." for i in range(10)}
    texts |= {"s1": "A shared passage.", "s2": "Another shared passage, a bit longer."}
    texts |= passage_edits or {}
    corpus = [Passage(pid, text, title=f"T-{pid}") for pid, text in texts.items()]
    questions = [Question(f"q{i}", f"What about topic {i}?", (f"topic {i}",), (f"p{i}",)) for i in range(10)]
    for qid, changes in (question_edits or {}).items():
        i = QIDS.index(qid)
        questions[i] = dataclasses.replace(questions[i], **changes)
    return RetrievalData("toy", corpus, questions, [])


def _candidates() -> dict[str, RankedList]:
    return {f"q{i}": RankedList([f"p{i}", "s1", "s2"], np.array([3.0, 2.0, 1.0])) for i in range(10)}


def _run(teacher, cache, data=None, shard_size=3):
    data = data or _data()
    return score_with_cache(teacher, data.train, _candidates(), data, cache, shard_size=shard_size)


def _cache(root: Path, cfg: dict = TEACHER_CFG) -> SignalCache:
    return SignalCache(root, config_key(cfg))


def assert_same_signals(actual: list[TeacherSignal], expected: list[TeacherSignal]) -> None:
    assert [s.qid for s in actual] == [s.qid for s in expected]
    for a, e in zip(actual, expected, strict=True):
        assert a.candidate_ids == e.candidate_ids
        assert a.scores.dtype == np.float32
        assert a.scores.tobytes() == e.scores.tobytes()  # bit-exact, -inf included
        assert a.positive_ids == e.positive_ids
        assert a.diagnostics == e.diagnostics


def _shard_path(cache: SignalCache, shard: int, data: RetrievalData | None = None) -> Path:
    data = data or _data()
    questions = data.train[3 * shard : 3 * shard + 3]
    return cache.path(cache.shard_key(questions, _candidates(), data))


def test_second_call_reuses_every_shard_and_round_trips_signals(tmp_path: Path):
    first_teacher = CountingTeacher()
    first, stats = _run(first_teacher, _cache(tmp_path))
    assert first_teacher.calls == SHARDS
    assert (stats.shards_total, stats.shards_reused, stats.shards_scored, stats.shards_corrupt) == (4, 0, 4, 0)
    data = _data()
    assert_same_signals(first, CountingTeacher().score(data.train, _candidates(), data))

    second_teacher = CountingTeacher()
    second, stats = _run(second_teacher, _cache(tmp_path))  # a new cache object, as in a new run
    assert second_teacher.calls == []
    assert_same_signals(second, first)
    assert np.isneginf(second[0].scores[-1]) and second[0].scores[0] == np.float32(len(data.corpus[0].text) / 3)
    assert second[0].positive_ids == ("p0",) and second[0].diagnostics["answer_mass"] == 1 / 7
    assert stats.metrics() == {
        "teacher/cache_shards_total": 4.0,
        "teacher/cache_shards_reused": 4.0,
        "teacher/cache_shards_scored": 0.0,
        "teacher/cache_shards_corrupt": 0.0,
        "runtime/teacher_scoring_s": 0.0,
    }


def test_config_key_ignores_runtime_keys_order_and_omegaconf_but_not_settings():
    key = config_key(TEACHER_CFG, {"name": "toy"})
    assert len(key) == 20 and int(key, 16) >= 0
    runtime = {
        **TEACHER_CFG,
        "lm": {"batch_size": 64, "name": "tiny", "devices": 2, "accelerator": "gpu"},
        **{k: 7 for k in RUNTIME_KEYS},
    }
    assert config_key(runtime, {"name": "toy", "num_workers": 4}) == key
    reordered = {"lm": {"name": "tiny"}, "temperature": 1.0, "_target_": "tests.FakeTeacher"}
    assert config_key(reordered, {"name": "toy"}) == key
    interpolated = OmegaConf.create({"t": 1.0, "teacher": {**TEACHER_CFG, "temperature": "${t}"}})
    assert config_key(interpolated.teacher, OmegaConf.create({"name": "toy"})) == key

    assert config_key({**TEACHER_CFG, "temperature": 0.5}, {"name": "toy"}) != key
    assert config_key({**TEACHER_CFG, "lm": {"name": "other"}}, {"name": "toy"}) != key
    assert config_key({**TEACHER_CFG, "_target_": "tests.OtherTeacher"}, {"name": "toy"}) != key
    assert config_key(TEACHER_CFG, {"name": "toy"}, "checkpoint-2") != key
    assert config_key({"name": "toy"}, TEACHER_CFG) != key  # parts are ordered
    assert config_key({"x": 1}) != config_key({"x": True}) != config_key({"x": "1"})
    with pytest.raises(TypeError, match="object"):
        config_key({"x": object()})


def test_changed_teacher_option_misses_and_runtime_change_hits(tmp_path: Path):
    _run(CountingTeacher(), _cache(tmp_path))

    runtime_only = {**TEACHER_CFG, "lm": {"name": "tiny", "batch_size": 128}, "progress": False}
    teacher = CountingTeacher()
    _, stats = _run(teacher, _cache(tmp_path, runtime_only))
    assert teacher.calls == [] and stats.shards_reused == 4

    changed = {**TEACHER_CFG, "temperature": 2.0}
    teacher = CountingTeacher(scale=2.0)
    signals, stats = _run(teacher, _cache(tmp_path, changed))
    assert teacher.calls == SHARDS and stats.shards_reused == 0
    assert signals[0].scores[0] == np.float32(2 * len(_data().corpus[0].text) / 3)


@pytest.mark.parametrize(
    "changes", [{"text": "A rephrased question?"}, {"answers": ("another",)}, {"gold_ids": ("p4", "s1")}]
)
def test_changed_question_misses_only_its_shard(tmp_path: Path, changes: dict):
    _run(CountingTeacher(), _cache(tmp_path))
    teacher = CountingTeacher()
    _, stats = _run(teacher, _cache(tmp_path), data=_data(question_edits={"q4": changes}))
    assert teacher.calls == [SHARDS[1]]
    assert (stats.shards_reused, stats.shards_scored) == (3, 1)


def test_changed_passage_text_misses_only_the_shards_that_show_it(tmp_path: Path):
    first, _ = _run(CountingTeacher(), _cache(tmp_path))

    teacher = CountingTeacher()
    edited = _data(passage_edits={"p7": "A much longer replacement text for passage seven, which changes its score."})
    signals, stats = _run(teacher, _cache(tmp_path), data=edited)
    assert teacher.calls == [SHARDS[2]] and stats.shards_reused == 3
    assert signals[7].scores[0] != first[7].scores[0]  # the new text was scored, not the cached one
    assert_same_signals(signals[:7] + signals[8:], first[:7] + first[8:])

    teacher = CountingTeacher()
    _run(teacher, _cache(tmp_path), data=_data(passage_edits={"s1": "The shared passage, edited."}))
    assert teacher.calls == SHARDS


def test_interrupted_run_resumes_from_finished_shards(tmp_path: Path):
    reference, _ = _run(CountingTeacher(), _cache(tmp_path / "reference"))

    cache = _cache(tmp_path / "cache")
    with pytest.raises(RuntimeError, match="teacher crashed"):
        _run(CountingTeacher(fail_on_call=3), cache)
    assert len(list(cache.dir.glob("shard-*.json"))) == 2
    assert not [p for p in cache.dir.iterdir() if p.name.endswith(".tmp")]

    teacher = CountingTeacher()
    signals, stats = _run(teacher, _cache(tmp_path / "cache"))
    assert teacher.calls == SHARDS[2:]
    assert (stats.shards_reused, stats.shards_scored) == (2, 2)
    assert_same_signals(signals, reference)


def _truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _flip_score_digit(raw: bytes) -> bytes:
    start = raw.index(b'"scores":[') + len(b'"scores":[')
    i = next(j for j in range(start, len(raw)) if raw[j : j + 1].isdigit())
    flipped = raw[:i] + (b"2" if raw[i : i + 1] != b"2" else b"3") + raw[i + 1 :]
    json.loads(flipped.partition(b"\n")[2])  # still valid JSON: only the checksum can tell
    return flipped


def _old_format(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\n")
    header = json.loads(head) | {"format": CACHE_FORMAT_VERSION + 1}
    return json.dumps(header).encode() + b"\n" + body


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (_truncate, "truncated"),
        (lambda raw: b"", "truncated"),
        (_flip_score_digit, "checksum mismatch"),
        (_old_format, "format version"),
        (lambda raw: b"\xff\xfe not json\n{}", "unreadable header"),
    ],
    ids=["half", "empty", "flipped_byte", "format_version", "garbage"],
)
def test_corrupt_shard_is_reported_and_recomputed(tmp_path: Path, caplog, corrupt, problem: str):
    clean, _ = _run(CountingTeacher(), _cache(tmp_path))
    path = _shard_path(_cache(tmp_path), shard=1)
    path.write_bytes(corrupt(path.read_bytes()))

    teacher = CountingTeacher()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        signals, stats = _run(teacher, _cache(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and problem in warnings[0]
    assert teacher.calls == [SHARDS[1]]
    assert (stats.shards_reused, stats.shards_scored, stats.shards_corrupt) == (3, 1, 1)
    assert_same_signals(signals, clean)

    caplog.clear()
    teacher = CountingTeacher()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again, stats = _run(teacher, _cache(tmp_path))
    assert teacher.calls == [] and stats.shards_corrupt == 0 and not caplog.records
    assert_same_signals(again, clean)


def test_dropped_questions_are_remembered_not_rescored(tmp_path: Path):
    first_teacher = CountingTeacher(drop=("q4", "q9"))  # q9 is the whole last shard
    first, _ = _run(first_teacher, _cache(tmp_path))
    assert [s.qid for s in first] == [q for q in QIDS if q not in {"q4", "q9"}]

    teacher = CountingTeacher()  # would judge every question, if asked
    second, stats = _run(teacher, _cache(tmp_path))
    assert teacher.calls == [] and stats.shards_reused == 4
    assert_same_signals(second, first)


def test_without_cache_scores_everything_in_one_call(tmp_path: Path):
    teacher = CountingTeacher(drop=("q2",))
    signals, stats = _run(teacher, None)
    assert teacher.calls == [QIDS]
    assert stats == CacheStats(shards_total=1, shards_scored=1, seconds_scoring=stats.seconds_scoring)
    assert stats.metrics()["teacher/cache_shards_reused"] == 0.0
    data = _data()
    assert_same_signals(signals, CountingTeacher(drop=("q2",)).score(data.train, _candidates(), data))


@pytest.mark.parametrize("shard_size", [0, -2])
@pytest.mark.parametrize("use_cache", [True, False])
def test_bad_shard_size_raises(tmp_path: Path, shard_size: int, use_cache: bool):
    teacher = CountingTeacher()
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        _run(teacher, _cache(tmp_path) if use_cache else None, shard_size=shard_size)
    assert teacher.calls == []


def test_no_questions_calls_no_teacher(tmp_path: Path):
    teacher = CountingTeacher()
    data = _data()
    signals, stats = score_with_cache(teacher, [], _candidates(), data, _cache(tmp_path))
    assert signals == [] and teacher.calls == [] and stats.shards_total == 0


def test_info_json_records_the_parts_without_runtime_keys(tmp_path: Path):
    cache = SignalCache.from_parts(tmp_path, TEACHER_CFG, {"name": "toy", "num_workers": 3})
    assert cache.key == config_key(TEACHER_CFG, {"name": "toy"})
    assert cache.dir == tmp_path / "teacher_signals" / cache.key
    _run(CountingTeacher(), cache)
    info = json.loads((cache.dir / "info.json").read_text())
    assert info["key"] == cache.key and info["format_version"] == CACHE_FORMAT_VERSION
    assert info["parts"] == [
        {"_target_": "tests.FakeTeacher", "temperature": 1.0, "lm": {"name": "tiny"}},
        {"name": "toy"},
    ]
    assert info["created"].startswith("20")


def test_teacher_answering_foreign_questions_is_refused(tmp_path: Path):
    class Confused(CountingTeacher):
        def score(self, questions, candidates, data):
            return super().score([*questions, _data().train[9]], candidates, data)

    with pytest.raises(ValueError, match=r"\['q9'\].*not asked"):
        _run(Confused(), _cache(tmp_path))


def test_load_and_save_directly(tmp_path: Path, caplog):
    cache = _cache(tmp_path)
    shard_key = "0123456789abcdef0123456789abcdef"
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert cache.load(shard_key) is None  # missing is not corrupt
    assert not caplog.records and cache.corrupt == 0
    signal = TeacherSignal("q0", ["a", "b"], np.array([NO_OPINION, 0.1]), positive_ids=("b",))
    cache.save(shard_key, [signal], question_ids=["q0", "q1"])
    loaded = cache.load(shard_key)
    assert loaded is not None
    assert_same_signals(loaded, [signal])
    with pytest.raises(ValueError, match="not asked"):
        cache.save(shard_key, [signal], question_ids=["q1"])
    with pytest.raises(ValueError, match="plain file name"):
        SignalCache(tmp_path, "../escape")
    with pytest.raises(ValueError, match="plain file name"):
        cache.path("../x")


def test_gold_teacher_on_the_fixture_goes_through_the_cache(tmp_path: Path, monkeypatch):
    data = load_fixture(n_train=12)
    candidates = {
        q.id: RankedList(
            [*q.gold_ids, *[p.id for p in data.corpus[:8] if p.id not in q.gold_ids][:6]], np.zeros(len(q.gold_ids) + 6)
        )
        for q in data.train
    }
    teacher = GoldTeacher(num_candidates=4)
    cache = SignalCache.from_parts(tmp_path, {"_target_": "ragdistill.teachers.gold.GoldTeacher", "num_candidates": 4})
    first, stats = score_with_cache(teacher, data.train, candidates, data, cache, shard_size=5)
    assert (stats.shards_total, stats.shards_scored) == (3, 3)
    assert_same_signals(first, GoldTeacher(num_candidates=4).score(data.train, candidates, data))

    def must_not_run(*args, **kwargs):
        raise AssertionError("the teacher ran although every shard was cached")

    monkeypatch.setattr(GoldTeacher, "score", must_not_run)
    second, stats = score_with_cache(teacher, data.train, candidates, data, cache, shard_size=5)
    assert stats.shards_reused == 3
    assert_same_signals(second, first)


def test_unwritable_cache_warns_and_still_returns_the_signals(tmp_path: Path, monkeypatch, caplog):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("ragdistill.teachers.cache.atomic_write_text", disk_full)
    teacher = CountingTeacher()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        signals, stats = _run(teacher, _cache(tmp_path))
    assert teacher.calls == SHARDS and stats.shards_scored == 4 and [s.qid for s in signals] == QIDS
    warned = [r.getMessage() for r in caplog.records if "No space left" in r.getMessage()]
    assert len(warned) == 1 and "in memory" in warned[0]  # once, not once per shard: the disk stays full


# --- shards sized by passages (teacher_shard_passages) ---------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "limit", "expected"),
    [
        ([3] * 10, 9, [3, 3, 3, 1]),
        ([3] * 10, 10, [4, 4, 2]),
        ([3] * 10, 1, [1] * 10),
        ([3] * 10, 1000, [10]),
        ([50, 1, 1, 50, 0], 20, [1, 3, 1]),  # a question is never split; one without candidates still counts
    ],
)
def test_plan_shards_closes_a_shard_at_the_passage_budget(sizes, limit, expected):
    questions = [Question(f"q{i}", "?", (), ()) for i in range(len(sizes))]
    shards = plan_shards(questions, sizes, limit)
    assert [len(shard) for shard in shards] == expected
    assert [q for shard in shards for q in shard] == questions  # in order, each once


class JudgingTeacher(CountingTeacher):
    """A CountingTeacher that, like the LM teachers, judges at most ``num_candidates`` of each pool."""

    num_candidates = 2


def test_shards_by_passages_count_what_the_teacher_judges_and_resume(tmp_path: Path):
    """Ten questions, 2 judged passages each (of 3 candidates), 6 passages a shard: 3 questions a shard."""
    data = _data()
    first = JudgingTeacher()
    signals, stats = score_with_cache(first, data.train, _candidates(), data, _cache(tmp_path), shard_passages=6)
    assert first.calls == SHARDS and stats.shards_scored == 4
    again = JudgingTeacher()
    reused, stats = score_with_cache(again, data.train, _candidates(), data, _cache(tmp_path), shard_passages=6)
    assert again.calls == [] and stats.shards_reused == 4
    assert_same_signals(reused, signals)


def test_shards_by_passages_keep_the_cache_key(tmp_path: Path):
    """The shard size regroups questions into files; it is no part of what the signals are."""
    assert "shard_size" in RUNTIME_KEYS
    assert config_key(TEACHER_CFG) == config_key({**TEACHER_CFG, "shard_size": 7})


def test_bad_shard_passages_raise(tmp_path: Path):
    data = _data()
    with pytest.raises(ValueError, match="teacher_shard_passages must be >= 1"):
        score_with_cache(CountingTeacher(), data.train, _candidates(), data, _cache(tmp_path), shard_passages=0)


def test_the_run_config_shards_by_the_default_passages(compose_cfg):
    """``teacher_shard_passages`` defaults to 240: ~1 minute of LM scoring at ~4 passages/s on 2 CPU cores."""
    assert compose_cfg("config").teacher_shard_passages == DEFAULT_SHARD_PASSAGES == 240


def _in_steps(teacher, cache, save_every=2, shard_passages=6):
    """Ten questions judging 2 passages each: shards of 3 questions, steps of ``save_every // 2`` questions."""
    data = _data()
    return score_with_cache(
        teacher, data.train, _candidates(), data, cache, shard_passages=shard_passages, save_every=save_every
    )


def test_a_shard_is_scored_in_steps_of_save_every_passages(tmp_path: Path):
    teacher = JudgingTeacher()
    signals, stats = _in_steps(teacher, _cache(tmp_path / "steps"), save_every=4)  # 2 questions a step
    assert teacher.calls == [["q0", "q1"], ["q2"], ["q3", "q4"], ["q5"], ["q6", "q7"], ["q8"], ["q9"]]
    assert stats.shards_scored == 4
    whole, _ = _in_steps(JudgingTeacher(), _cache(tmp_path / "whole"), save_every=None)
    assert_same_signals(signals, whole)
    assert not list((tmp_path / "steps").rglob("*.partial.json"))  # finished shards leave no progress file


def test_a_kill_inside_a_shard_loses_only_the_step_in_progress(tmp_path: Path):
    """Killed in the 2nd step of the 2nd shard: the rerun scores only that step's questions and what follows."""
    reference, _ = _in_steps(JudgingTeacher(), _cache(tmp_path / "reference"), save_every=2)
    cache = _cache(tmp_path / "cache")
    killed = JudgingTeacher(fail_on_call=5)  # calls: q0 q1 q2 (shard 1), q3, then q4 crashes
    with pytest.raises(RuntimeError, match="teacher crashed"):
        _in_steps(killed, cache, save_every=2)
    (partial,) = cache.dir.glob("shard-*.partial.json")
    assert cache.load_partial(partial.name[len("shard-") : -len(".partial.json")])[0] == ["q3"]

    rerun = JudgingTeacher()
    signals, stats = _in_steps(rerun, _cache(tmp_path / "cache"), save_every=2)
    assert rerun.calls == [["q4"], ["q5"], ["q6"], ["q7"], ["q8"], ["q9"]]  # q3 came from the progress file
    assert (stats.shards_reused, stats.shards_scored) == (1, 3)
    assert_same_signals(signals, reference)
    assert not list(cache.dir.glob("*.partial.json"))
    # the finished shard is the same file an uninterrupted run writes
    finished = sorted(p.read_bytes() for p in cache.dir.glob("shard-*.json"))
    assert finished == sorted(p.read_bytes() for p in _cache(tmp_path / "reference").dir.glob("shard-*.json"))


def test_a_corrupt_progress_file_is_reported_and_its_shard_scored_whole(tmp_path: Path, caplog):
    cache = _cache(tmp_path)
    with pytest.raises(RuntimeError):
        _in_steps(JudgingTeacher(fail_on_call=5), cache, save_every=2)
    (partial,) = cache.dir.glob("shard-*.partial.json")
    partial.write_bytes(_truncate(partial.read_bytes()))
    rerun = JudgingTeacher()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        _in_steps(rerun, _cache(tmp_path), save_every=2)
    assert rerun.calls[:3] == [["q3"], ["q4"], ["q5"]]
    assert any(str(partial) in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)


def test_progress_that_cannot_be_written_warns_once_and_the_run_finishes(tmp_path: Path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SignalCache, "save", refuse)
    teacher = JudgingTeacher()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        signals, _ = _in_steps(teacher, _cache(tmp_path), save_every=2)
    assert [s.qid for s in signals] == QIDS and len(teacher.calls) == 10
    assert len([r for r in caplog.records if "Could not write" in r.getMessage()]) == 1


def test_bad_save_every_raises(tmp_path: Path):
    with pytest.raises(ValueError, match="teacher_save_every_passages must be >= 1"):
        _in_steps(CountingTeacher(), _cache(tmp_path), save_every=0)


def test_the_run_config_saves_progress_every_default_passages(compose_cfg):
    assert compose_cfg("config").teacher_save_every_passages == DEFAULT_SAVE_EVERY_PASSAGES == 120


class SlowTeacher(CountingTeacher):
    """A CountingTeacher that takes its time and notes each scored question in a shared file."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def score(self, questions, candidates, data):
        with self.log.open("a") as out:
            out.write("".join(f"{q.id}\n" for q in questions))
        time.sleep(0.3)
        return super().score(questions, candidates, data)


def _score_in_a_child(root: Path, log: Path, result: Path) -> None:
    signals, stats = _run(SlowTeacher(log), _cache(root))
    result.write_text(
        json.dumps(
            {
                "qids": [s.qid for s in signals],
                "scored": stats.shards_scored,
                "reused": stats.shards_reused,
                "scores": [s.scores.tolist()[:-1] for s in signals],
            }
        )
    )


def test_two_jobs_of_a_parallel_sweep_score_each_shard_once(tmp_path: Path):
    """Two processes needing the same shards at once (a joblib multirun): one scores each shard, the other waits
    for it and reuses it; both end with every signal, and no shard is scored twice or left corrupt."""
    context = multiprocessing.get_context("fork")
    log = tmp_path / "scored.txt"
    jobs = [
        context.Process(target=_score_in_a_child, args=(tmp_path / "cache", log, tmp_path / f"job{i}.json"))
        for i in range(2)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    scored = log.read_text().split()
    assert sorted(scored) == sorted(QIDS)  # every question scored exactly once across both jobs
    results = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(2)]
    assert all(r["qids"] == QIDS for r in results)
    assert results[0]["scores"] == results[1]["scores"]
    assert sorted(r["scored"] + r["reused"] for r in results) == [len(SHARDS), len(SHARDS)]
    assert sum(r["scored"] for r in results) == len(SHARDS)


def test_labelled_negatives_are_part_of_the_shard_key(tmp_path: Path):
    """The gold teacher trains on them: changing them must miss the cache, and data without them keeps its keys."""
    data, cache = _data(), _cache(tmp_path)
    plain = cache.shard_key(data.train[:3], _candidates(), data)
    labelled = _data(question_edits={"q1": {"negative_ids": ("s1",)}})
    other = _data(question_edits={"q1": {"negative_ids": ("s2",)}})
    keys = {cache.shard_key(d.train[:3], _candidates(), d) for d in (labelled, other)}
    assert len(keys) == 2 and plain not in keys
    empty = _data(question_edits={"q1": {"negative_ids": ()}})
    assert cache.shard_key(empty.train[:3], _candidates(), empty) == plain
