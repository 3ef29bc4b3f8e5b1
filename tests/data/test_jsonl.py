import contextlib
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragdistill.data.errors import DataValidationError
from ragdistill.data.jsonl import load_jsonl_data, read_corpus, read_questions
from ragdistill.data.sampling import sample_questions
from ragdistill.data.schemas import Question

CORPUS = [
    {"id": "p1", "text": "Paris is the capital of France.", "title": "France"},
    {"id": "p2", "text": "Berlin is the capital of Germany."},
    {"id": "p3", "text": "Rome is the capital of Italy.", "title": "Italy"},
]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def question(i: int, gold: str = "p1") -> dict[str, Any]:
    return {"id": f"q{i:03d}", "question": f"Question {i}?", "answers": [f"answer {i}"], "gold_ids": [gold]}


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", CORPUS)


@contextlib.contextmanager
def raises_at(path: Path, line: int | None, *fragments: str) -> Iterator[None]:
    """Expect a DataValidationError naming the file, the line and every fragment (field, type, id)."""
    with pytest.raises(DataValidationError) as info:
        yield
    err, message = info.value, str(info.value)
    assert err.path == str(path)
    assert err.line == line
    assert message.startswith(f"{path}: " if line is None else f"{path} line {line}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- a valid file -------------------------------------------------------------------------


def test_loads_valid_files_in_file_order(tmp_path: Path, corpus_file: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [question(2, "p2"), question(1)])
    evaluation = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"id": "e1", "question": "Capital of Italy?", "answers": ["Rome", "Rome", "rome"], "gold_ids": ["p3", "p3"]}],
    )
    data = load_jsonl_data(corpus_file, train, evaluation, name="toy")
    assert data.name == "toy"
    assert [p.id for p in data.corpus] == ["p1", "p2", "p3"]
    assert data.corpus[1].title == ""
    assert data.passage("p3").title == "Italy"
    assert [q.id for q in data.train] == ["q002", "q001"]
    # repeated answers and gold ids are kept once, in order
    assert data.eval[0].answers == ("Rome", "rome")
    assert data.eval[0].gold_ids == ("p3",)


def test_optional_fields_may_be_missing_or_null(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "p1", "text": "t", "title": None}])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [{"id": "q1", "question": "?", "answers": None}])
    data = load_jsonl_data(corpus, None, evaluation)
    assert data.train == []
    assert data.eval == [Question(id="q1", text="?")]


def test_blank_lines_and_bom_and_extra_fields_are_accepted(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'\xef\xbb\xbf{"id": "p1", "text": "t", "source": "mine"}\n\n   \r\n{"id": "p2", "text": "u"}')
    assert [p.id for p in read_corpus(corpus)] == ["p1", "p2"]


# --- one test per validation error ------------------------------------------------------


def test_missing_file(tmp_path: Path, corpus_file: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with raises_at(missing, None, "file not found"):
        load_jsonl_data(corpus_file, None, missing)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "corpus.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with raises_at(empty, None, "empty"):
        read_corpus(empty)


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"id": "p1", "text": "ok"}\n{"id": "p2", "text": "caf\xe9"}\n')
    with raises_at(corpus, 2, "UTF-8", "0xe9"):
        read_corpus(corpus)


def test_malformed_json(tmp_path: Path) -> None:
    corpus = write_lines(tmp_path / "corpus.jsonl", ['{"id": "p1", "text": "ok"}', '{"id": "p2" "text": "x"}'])
    with raises_at(corpus, 2, "invalid JSON", "column"):
        read_corpus(corpus)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"id": "p1", "text": "caf\xe9"}\n', "byte 0xe9 at column 26"),
        (b'\xef\xbb\xbf{"id": "p1", "text": "caf\xe9"}\n', "byte 0xe9 at column 26"),  # the BOM is not a column
        (b'{"id": "p1", "text": "\xc3\xa9t\xc3\xa9 \xff"}\n', "byte 0xff at column 27"),  # columns count characters
    ],
)
def test_bad_utf8_column_counts_characters_after_the_bom(tmp_path: Path, content: bytes, fragment: str) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content)
    with raises_at(corpus, 1, "not valid UTF-8", fragment):
        read_corpus(corpus)


@pytest.mark.parametrize(
    ("content", "line", "fragments"),
    [
        # json.loads raises RecursionError / a plain ValueError here, not JSONDecodeError
        (b'{"id": "p1", "text": "t", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 1, ("nested too deeply",)),
        (b'{"id": "p1", "text": "t", "n": 1' + b"0" * 5000 + b"}", 1, ("number is too long", "4300 digits")),
        (b'{"id": "p1", "text": "t"}\n{"id": "p2", "te', 2, ("Unterminated string", "was it cut short?")),
        (b'{\n  "id": "p1",\n  "text": "t"\n}\n', 1, ("not closed on this line", "pretty-printed")),
    ],
)
def test_json_faults_beyond_syntax_errors(tmp_path: Path, content: bytes, line: int, fragments: tuple[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content)
    with raises_at(corpus, line, "invalid JSON", *fragments):
        read_corpus(corpus)


def test_syntax_error_on_a_closed_line_gets_no_hint(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"id": "p1" "text": "t"}')  # last line, no newline, but complete
    with pytest.raises(DataValidationError) as info:
        read_corpus(corpus)
    assert info.value.message == "invalid JSON: Expecting ',' delimiter (column 13)"


def test_byte_order_mark_after_the_first_line_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'\xef\xbb\xbf{"id": "p1", "text": "t"}\n\xef\xbb\xbf{"id": "p2", "text": "u"}\n')
    with raises_at(corpus, 2, "byte-order mark", "concatenated"):
        read_corpus(corpus)


@pytest.mark.parametrize(
    ("kind", "record", "fragment"),
    [
        ("corpus", {"id": "p1", "text": "a\ud800b"}, "field 'text' holds an unpaired surrogate \\ud800 at character 2"),
        ("corpus", {"id": "p1", "text": "t", "title": "\udfff"}, "field 'title' holds an unpaired surrogate"),
        ("questions", {"id": "q\udc80", "question": "?"}, "field 'id' holds an unpaired surrogate \\udc80"),
        ("questions", {"id": "q", "question": "?", "answers": ["ok", "x\ud83d"]}, "field 'answers' item 1 holds"),
        ("questions", {"id": "q", "turns": ["hi", "\ud83d"]}, "field 'turns' item 1 holds an unpaired surrogate"),
    ],
)
def test_lone_surrogates_are_refused(tmp_path: Path, kind: str, record: dict[str, Any], fragment: str) -> None:
    path = write_jsonl(tmp_path / f"{kind}.jsonl", [record])  # json.dumps writes them as \\uXXXX escapes
    with raises_at(path, 1, fragment, "not valid Unicode"):
        read_corpus(path) if kind == "corpus" else read_questions(path, set())


def test_surrogate_pairs_are_one_character(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "p1", "text": "smile \U0001f600"}])
    assert b"\\ud83d\\ude00" in corpus.read_bytes()
    assert read_corpus(corpus)[0].text == "smile \U0001f600"


def test_unreadable_file(tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # chmod would not stop root
    with raises_at(corpus_file, None, "cannot read the file: Permission denied"):
        read_corpus(corpus_file)


@pytest.mark.parametrize(("line", "json_type"), [("[1, 2]", "array"), ('"text"', "string"), ("3", "number")])
def test_line_not_an_object(tmp_path: Path, line: str, json_type: str) -> None:
    corpus = write_lines(tmp_path / "corpus.jsonl", ['{"id": "p1", "text": "ok"}', line])
    with raises_at(corpus, 2, "expected a JSON object", json_type):
        read_corpus(corpus)


@pytest.mark.parametrize("field", ["id", "text"])
def test_corpus_missing_field(tmp_path: Path, field: str) -> None:
    record = {"id": "p1", "text": "t"}
    del record[field]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [record])
    with raises_at(corpus, 1, f"missing required field {field!r}", "string"):
        read_corpus(corpus)


@pytest.mark.parametrize("field", ["id", "question"])
def test_question_missing_field(tmp_path: Path, field: str) -> None:
    record = question(1)
    del record[field]
    questions = write_jsonl(tmp_path / "eval.jsonl", [question(0), record])
    with raises_at(questions, 2, f"missing required field {field!r}", "string"):
        read_questions(questions, {"p1"})


@pytest.mark.parametrize(
    ("field", "value", "expected", "got"),
    [
        ("id", 7, "a string", "number"),
        ("text", ["a"], "a string", "array"),
        ("title", {"a": 1}, "a string", "object"),
    ],
)
def test_corpus_wrong_type(tmp_path: Path, field: str, value: Any, expected: str, got: str) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "p1", "text": "t", field: value}])
    with raises_at(corpus, 1, f"field {field!r} must be {expected}, got {got}"):
        read_corpus(corpus)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("question", True, "field 'question' must be a string, got boolean"),
        ("answers", "Paris", "field 'answers' must be an array of strings, got string"),
        ("answers", ["Paris", 3], "field 'answers' must be an array of strings, item 1 is number"),
        ("gold_ids", "p1", "field 'gold_ids' must be an array of strings, got string"),
        ("answers", ["Paris", " "], "field 'answers' item 1 is an empty string"),
    ],
)
def test_question_wrong_type(tmp_path: Path, field: str, value: Any, fragment: str) -> None:
    questions = write_jsonl(tmp_path / "train.jsonl", [{**question(1), field: value}])
    with raises_at(questions, 1, fragment):
        read_questions(questions, {"p1"})


@pytest.mark.parametrize(("field", "value"), [("text", ""), ("text", "  \n"), ("id", "")])
def test_empty_text(tmp_path: Path, field: str, value: str) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [CORPUS[0], {"id": "p9", "text": "t", field: value}])
    with raises_at(corpus, 2, f"field {field!r} is empty"):
        read_corpus(corpus)


def test_empty_question(tmp_path: Path) -> None:
    questions = write_jsonl(tmp_path / "eval.jsonl", [{**question(1), "question": " "}])
    with raises_at(questions, 1, "field 'question' is empty"):
        read_questions(questions, {"p1"})


def test_duplicate_passage_id(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*CORPUS, {"id": "p2", "text": "again"}])
    with raises_at(corpus, 4, "duplicate passage id 'p2' (first seen on line 2)"):
        read_corpus(corpus)


def test_duplicate_passage_id_message_reads_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [json.dumps({"id": f"p{i}", "text": "t"}) for i in range(1, 12)]
    write_lines(tmp_path / "corpus.jsonl", [*lines, json.dumps({"id": "p4", "text": "t"})])
    with pytest.raises(DataValidationError) as info:
        read_corpus("corpus.jsonl")
    assert str(info.value) == "corpus.jsonl line 12: duplicate passage id 'p4' (first seen on line 4)"


def test_duplicate_question_id(tmp_path: Path, corpus_file: Path) -> None:
    questions = write_jsonl(tmp_path / "train.jsonl", [question(1), question(2), question(1)])
    with raises_at(questions, 3, "duplicate question id 'q001' (first seen on line 1)"):
        load_jsonl_data(corpus_file, questions, questions)


def test_gold_id_not_in_corpus(tmp_path: Path, corpus_file: Path) -> None:
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [question(1), question(2, gold="p99")])
    with raises_at(evaluation, 2, "gold id 'p99'", "corpus"):
        load_jsonl_data(corpus_file, None, evaluation)


def test_error_pickles_with_its_fields() -> None:
    err = DataValidationError("corpus.jsonl", "boom", 3)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.path, clone.line, clone.message, str(clone)) == (
        "corpus.jsonl",
        3,
        "boom",
        "corpus.jsonl line 3: boom",
    )
    assert isinstance(clone, ValueError)


def test_shared_ids_between_splits_warn(tmp_path: Path, corpus_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [question(1), question(2)])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [question(2)])
    with caplog.at_level(logging.WARNING):
        load_jsonl_data(corpus_file, train, evaluation)
    assert "both train and eval" in caplog.text


# --- deterministic subsampling ----------------------------------------------------------


@pytest.fixture
def many_questions(tmp_path: Path, corpus_file: Path) -> tuple[Path, Path, Path]:
    records = [question(i, gold=f"p{i % 3 + 1}") for i in range(50)]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    shuffled = write_jsonl(tmp_path / "shuffled.jsonl", records[::-1])
    return corpus_file, train, shuffled


def test_subsampling_is_deterministic_and_independent_of_file_order(many_questions: tuple[Path, Path, Path]) -> None:
    corpus, train, shuffled = many_questions
    first = load_jsonl_data(corpus, train, train, n_train=10, n_eval=7, seed=3)
    again = load_jsonl_data(corpus, train, train, n_train=10, n_eval=7, seed=3)
    reordered = load_jsonl_data(corpus, shuffled, shuffled, n_train=10, n_eval=7, seed=3)
    other_seed = load_jsonl_data(corpus, train, train, n_train=10, n_eval=7, seed=4)
    assert len(first.train) == 10
    assert len(first.eval) == 7
    assert first.train == again.train
    assert first.eval == again.eval
    assert {q.id for q in first.train} == {q.id for q in reordered.train}
    assert {q.id for q in first.train} != {q.id for q in other_seed.train}
    # the chosen questions keep file order
    assert [q.id for q in first.train] == sorted(q.id for q in first.train)
    assert [q.id for q in reordered.train] == sorted((q.id for q in first.train), reverse=True)


def test_subsampling_matches_the_documented_recipe(many_questions: tuple[Path, Path, Path]) -> None:
    import random

    corpus, train, _ = many_questions
    data = load_jsonl_data(corpus, train, train, n_train=5, seed=11)
    ids = sorted(f"q{i:03d}" for i in range(50))
    assert {q.id for q in data.train} == set(random.Random(11).sample(ids, 5))


def test_subsampling_more_than_available_keeps_all_and_warns(
    many_questions: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    corpus, train, _ = many_questions
    with caplog.at_level(logging.WARNING, logger="ragdistill.data.sampling"):
        data = load_jsonl_data(corpus, train, train, n_train=500, n_eval=None)
    assert len(data.train) == 50
    assert len(data.eval) == 50
    assert "n_train=500" in caplog.text


def test_subsampling_rejects_negative_n() -> None:
    with pytest.raises(ValueError, match="n_eval"):
        sample_questions([Question(id="q", text="?")], -1, 0, split="eval")


def test_dialogue_turns_are_joined_one_per_line(tmp_path: Path) -> None:
    record = {"id": "d1", "turns": ["Hi!", "Hello, how can I help?", "Hi!"], "gold_ids": ["p1"]}
    questions = write_jsonl(tmp_path / "eval.jsonl", [record])
    [dialogue] = read_questions(questions, {"p1"})
    assert dialogue.text == "Hi!\nHello, how can I help?\nHi!" and dialogue.gold_ids == ("p1",)  # repeats kept


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "d1", "turns": ["a"], "question": "b"}, "not both"),
        ({"id": "d1", "turns": []}, "non-empty list of non-empty strings"),
        ({"id": "d1", "turns": ["a", " "]}, "item 1 is an empty string"),
    ],
)
def test_bad_dialogue_turns_are_refused(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    questions = write_jsonl(tmp_path / "eval.jsonl", [record])
    with raises_at(questions, 1, message):
        read_questions(questions, set())


def test_the_shipped_dialogue_fixture_loads() -> None:
    folder = Path(__file__).resolve().parents[1] / "fixtures" / "dialogue"
    data = load_jsonl_data(folder / "corpus.jsonl", folder / "train.jsonl", folder / "eval.jsonl", name="dialogue")
    assert len(data.corpus) == 20 and len(data.train) == 11 and len(data.eval) == 5
    assert all(q.text.count("\n") == 2 and q.gold_ids for q in data.train + data.eval)
