"""Property-based tests of the JSONL loaders: valid files round-trip, bad files fail on the right line.

Every corruption of a valid file must either load as docs/data_format.md says (blank lines, a leading
byte-order mark, unknown fields, CRLF) or raise ``DataValidationError`` whose text starts with the file
and the line at fault; never a raw KeyError, TypeError, JSONDecodeError, UnicodeDecodeError or
RecursionError from inside the loader.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragdistill.data.errors import DataValidationError
from ragdistill.data.jsonl import load_jsonl_data, read_corpus, read_questions
from ragdistill.data.schemas import Passage, Question

Record = dict[str, Any]
Draw = Callable[[st.SearchStrategy[Any]], Any]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"

# --- strategies -----------------------------------------------------------------------------

# Any unicode the loader must keep (st.text leaves out lone surrogates, which are not text);
# "non-empty" means not whitespace-only, the loader's rule.
TEXTS = st.text(min_size=1, max_size=12).filter(str.strip)
IDS = st.text(min_size=1, max_size=6).filter(str.strip)
BLANK = st.sampled_from(["", " ", "\t", "  \t "])
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=6,
)
NON_STRINGS = JSON_VALUES.filter(lambda v: not isinstance(v, str))
NON_OBJECTS = JSON_VALUES.filter(lambda v: not isinstance(v, dict))
# Optional fields may also be null; wrong types for them are everything else that is not their type.
NON_STRINGS_NOT_NULL = NON_STRINGS.filter(lambda v: v is not None)
NON_LISTS_NOT_NULL = JSON_VALUES.filter(lambda v: v is not None and not isinstance(v, list))
METADATA = st.dictionaries(st.sampled_from(["source", "meta", "url", "score"]), JSON_VALUES, max_size=2)


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# One line of text that is not JSON (and not blank, and not a lone BOM-led line).
NOT_JSON = st.text(min_size=1, max_size=30).filter(
    lambda s: s.strip() and "\n" not in s and "\r" not in s and "\ufeff" not in s and not is_json(s)
) | st.sampled_from(["{", "}", "{'id': 'p1'}", 'id: "p1"', '{"id": "p1",}', "[1, 2", "NaNa", '{"a": 1}{"b": 2}'])


@st.composite
def corpora(draw: Draw) -> list[Record]:
    """A valid corpus: unique ids, non-blank texts, a title that is missing, null, empty or any text."""
    ids = draw(st.lists(IDS, min_size=1, max_size=6, unique=True))
    return [
        {
            **draw(METADATA),
            **draw(
                st.fixed_dictionaries(
                    {"id": st.just(pid), "text": TEXTS},
                    optional={"title": st.none() | st.just("") | st.text(max_size=8)},
                )
            ),
        }
        for pid in ids
    ]


@st.composite
def question_sets(draw: Draw, corpus_ids: list[str]) -> list[Record]:
    """Valid questions over ``corpus_ids``: a question or dialogue turns, optional (possibly null) lists."""
    ids = draw(st.lists(IDS, min_size=1, max_size=6, unique=True))
    asked = st.fixed_dictionaries({"question": TEXTS}) | st.fixed_dictionaries(
        {"turns": st.lists(TEXTS, min_size=1, max_size=3)}
    )
    optional = {
        "answers": st.none() | st.lists(TEXTS, max_size=3),
        "gold_ids": st.none() | st.lists(st.sampled_from(corpus_ids), max_size=3),
    }
    return [
        {**draw(METADATA), "id": qid, **draw(asked), **draw(st.fixed_dictionaries({}, optional=optional))}
        for qid in ids
    ]


def expected_passage(record: Record) -> Passage:
    return Passage(id=record["id"], text=record["text"], title=record.get("title") or "")


def expected_question(record: Record) -> Question:
    text = record["question"] if "question" in record else "\n".join(record["turns"])
    # docs/data_format.md: repeated strings in answers / gold_ids are kept once, in order
    answers = tuple(dict.fromkeys(record.get("answers") or []))
    gold_ids = tuple(dict.fromkeys(record.get("gold_ids") or []))
    return Question(id=record["id"], text=text, answers=answers, gold_ids=gold_ids)


# --- writing files ---------------------------------------------------------------------------


def encode(record: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(record, ensure_ascii=ascii_only).encode("utf-8")


def write(path: Path, lines: list[bytes], newline: bytes = b"\n", final_newline: bool = True) -> Path:
    path.write_bytes(newline.join(lines) + (newline if final_newline and lines else b""))
    return path


@st.composite
def layouts(draw: Draw, lines: list[bytes]) -> tuple[list[bytes], bytes, bool]:
    """Re-lay valid lines in every way the docs accept: blank lines, BOM, CRLF, no final newline."""
    laid: list[bytes] = []
    for line in lines:
        laid += [b.encode() for b in draw(st.lists(BLANK, max_size=2))]
        laid.append(line)
    laid += [b.encode() for b in draw(st.lists(BLANK, max_size=2))]
    if draw(st.booleans()):
        laid[0] = BOM + laid[0]
    return laid, draw(st.sampled_from([b"\n", b"\r\n"])), draw(st.booleans())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # module-scoped: hypothesis runs the body many times per test and refuses function-scoped fixtures
    return tmp_path_factory.mktemp("jsonl_properties")


def assert_reported(error: DataValidationError, path: Path, line: int | None, pattern: str) -> None:
    """The error names the file as given, the line, and says what is wrong."""
    assert error.path == str(path)
    assert error.line == line, (error.line, line, str(error))
    where = f"{path}: " if line is None else f"{path} line {line}: "
    assert str(error) == where + error.message
    assert re.search(pattern, error.message), (pattern, error.message)
    assert "Traceback" not in error.message and "\n" not in error.message


# --- round trip ------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), corpus=corpora(), ascii_only=st.booleans())
def test_valid_files_load_back_exactly(workdir: Path, data: st.DataObject, corpus: list[Record], ascii_only: bool):
    corpus_ids = [r["id"] for r in corpus]
    train = data.draw(question_sets(corpus_ids), label="train")
    evaluation = data.draw(question_sets(corpus_ids), label="eval")
    paths = []
    for name, records in [("corpus", corpus), ("train", train), ("eval", evaluation)]:
        lines, newline, final_newline = data.draw(layouts([encode(r, ascii_only) for r in records]), label=name)
        paths.append(write(workdir / f"{name}.jsonl", lines, newline, final_newline))

    loaded = load_jsonl_data(*paths, name="prop")

    assert loaded.corpus == [expected_passage(r) for r in corpus]
    assert loaded.train == [expected_question(r) for r in train]
    assert loaded.eval == [expected_question(r) for r in evaluation]
    assert all(loaded.passage(pid).id == pid for pid in corpus_ids)


# --- single corruptions ----------------------------------------------------------------------
#
# A corruption takes the valid records and hypothesis' draw and returns the file's lines, the
# 1-based line that must be reported and a regex its message must match. Blank lines are mixed
# in afterwards (corrupted_files), and the reported line must count them.


class Corrupted(NamedTuple):
    lines: list[bytes]
    bad_line: int
    pattern: str
    cut_short: bool = False  # the file ends inside its last line (no final newline)
    blanks_from: int = 0  # blank lines go at or after this index (the message names no earlier line)


Corruption = Callable[[list[Record], Draw], Corrupted]
DELETE = object()


def any_index(records: list[Record], draw: Draw) -> int:
    return draw(st.integers(0, len(records) - 1))


def replace_line(records: list[Record], index: int, line: bytes, pattern: str) -> Corrupted:
    lines = [encode(r) for r in records]
    lines[index] = line
    return Corrupted(lines, index + 1, pattern)


def replace_field(records: list[Record], index: int, field: str, value: Any, pattern: str) -> Corrupted:
    """Set (or, for ``DELETE``, remove) ``field`` of one record; ``question`` and ``turns`` replace each other."""
    record = {k: v for k, v in records[index].items() if k != field and {k, field} != {"question", "turns"}}
    if value is not DELETE:
        record[field] = value
    return replace_line(records, index, encode(record), pattern)


def json_type(value: Any) -> str:
    """JSON's own name for a value's type, written independently of the loader's helper."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}
    return {**names, list: "array", dict: "object"}[type(value)]


def not_json(records: list[Record], draw: Draw) -> Corrupted:
    line = draw(NOT_JSON).encode()
    return replace_line(records, any_index(records, draw), line, r"^invalid JSON: .+ \(column \d+\)")


def truncated_last_line(records: list[Record], draw: Draw) -> Corrupted:
    lines = [encode(r) for r in records]
    lines[-1] = lines[-1][: draw(st.integers(1, len(lines[-1]) - 1))]
    return Corrupted(lines, len(lines), r"^invalid JSON: .*was it cut short\?$", cut_short=True)


def not_an_object(records: list[Record], draw: Draw) -> Corrupted:
    value = draw(NON_OBJECTS)
    pattern = f"^expected a JSON object, got {json_type(value)}$"
    return replace_line(records, any_index(records, draw), encode(value), pattern)


def bad_utf8(records: list[Record], draw: Draw) -> Corrupted:
    index = any_index(records, draw)
    line = encode(records[index])
    at = draw(st.integers(0, len(line)))
    byte = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\x80", b"\xed\xa0\x80"]))  # the last: a surrogate
    pattern = rf"^not valid UTF-8 \(byte {byte[0]:#04x} at column {at + 1}\)"
    return replace_line(records, index, line[:at] + byte + line[at:], pattern)


def byte_order_mark_inside(records: list[Record], draw: Draw) -> Corrupted:
    """A BOM on a later line: what ``cat a.jsonl b.jsonl`` makes of two files saved with one."""
    lines = [encode(r) for r in records]
    index = draw(st.integers(1, len(lines)))
    lines.insert(index, BOM + encode({**records[0], "id": "from-another-file"}))
    return Corrupted(lines, index + 1, r"byte-order mark .*concatenated")


def duplicate_id(kind: str) -> Corruption:
    def corrupt(records: list[Record], draw: Draw) -> Corrupted:
        first = any_index(records, draw)
        lines = [encode(r) for r in records]
        index = draw(st.integers(first + 1, len(lines)))
        lines.insert(index, encode(records[first]))
        message = f"duplicate {kind} id {records[first]['id']!r} (first seen on line {first + 1})"
        return Corrupted(lines, index + 1, f"^{re.escape(message)}$", blanks_from=first + 1)

    return corrupt


def nested_too_deeply(records: list[Record], draw: Draw) -> Corrupted:
    index, depth = any_index(records, draw), draw(st.sampled_from([10_000, 100_000]))
    line = encode(records[index])[:-1] + b', "meta": ' + b"[" * depth + b"]" * depth + b"}"
    return replace_line(records, index, line, r"^invalid JSON: .*nested too deeply")


def huge_number(records: list[Record], draw: Draw) -> Corrupted:
    index, digits = any_index(records, draw), draw(st.integers(5_000, 20_000))
    line = encode(records[index])[:-1] + b', "score": 1' + b"0" * digits + b"}"
    return replace_line(records, index, line, r"^invalid JSON: .*number is too long")


def lone_surrogate(fields: list[str]) -> Corruption:
    """A ``\\ud800`` escape is valid JSON but not text: it would crash a tokenizer later, mid-run."""

    def corrupt(records: list[Record], draw: Draw) -> Corrupted:
        field, index = draw(st.sampled_from(fields)), any_index(records, draw)
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\udc80"]))
        value = json.loads(f'"a{escape}b"')
        return replace_field(records, index, field, value, rf"^field '{field}' .*unpaired surrogate")

    return corrupt


def wrong_string(fields: list[str], values: st.SearchStrategy[Any]) -> Corruption:
    def corrupt(records: list[Record], draw: Draw) -> Corrupted:
        field, value = draw(st.sampled_from(fields)), draw(values)
        pattern = f"^field '{field}' must be a string, got {json_type(value)}$"
        return replace_field(records, any_index(records, draw), field, value, pattern)

    return corrupt


def missing(fields: list[str]) -> Corruption:
    def corrupt(records: list[Record], draw: Draw) -> Corrupted:
        field = draw(st.sampled_from(fields))
        pattern = f"^missing required field '{field}' \\(string\\)$"
        return replace_field(records, any_index(records, draw), field, DELETE, pattern)

    return corrupt


def blank_string(fields: list[str]) -> Corruption:
    def corrupt(records: list[Record], draw: Draw) -> Corrupted:
        field = draw(st.sampled_from(fields))
        return replace_field(records, any_index(records, draw), field, draw(BLANK), f"^field '{field}' is empty$")

    return corrupt


COMMON: list[Corruption] = [
    not_json,
    truncated_last_line,
    not_an_object,
    bad_utf8,
    byte_order_mark_inside,
    nested_too_deeply,
    huge_number,
]

CORPUS_CORRUPTIONS: list[Corruption] = [
    *COMMON,
    duplicate_id("passage"),
    missing(["id", "text"]),
    wrong_string(["id", "text"], NON_STRINGS),
    wrong_string(["title"], NON_STRINGS_NOT_NULL),
    blank_string(["id", "text"]),
    lone_surrogate(["id", "text", "title"]),
]


def missing_question(records: list[Record], draw: Draw) -> Corrupted:
    index = any_index(records, draw)
    record = {k: v for k, v in records[index].items() if k not in ("question", "turns")}
    return replace_line(records, index, encode(record), r"^missing required field 'question' \(string\)$")


def question_and_turns(records: list[Record], draw: Draw) -> Corrupted:
    index = any_index(records, draw)
    record = {**records[index], "question": "q?", "turns": ["a", "b"]}
    return replace_line(records, index, encode(record), r"one of 'question' .* and 'turns' .*not both")


def wrong_list(records: list[Record], draw: Draw) -> Corrupted:
    field, value = draw(st.sampled_from(["answers", "gold_ids", "turns"])), draw(NON_LISTS_NOT_NULL)
    pattern = f"^field '{field}' must be an array of strings, got {json_type(value)}$"
    return replace_field(records, any_index(records, draw), field, value, pattern)


def wrong_list_item(records: list[Record], draw: Draw) -> Corrupted:
    field = draw(st.sampled_from(["answers", "gold_ids", "turns"]))
    items, item = draw(st.lists(st.just("p"), max_size=2)), draw(NON_STRINGS)
    pattern = f"^field '{field}' must be an array of strings, item {len(items)} is {json_type(item)}$"
    return replace_field(records, any_index(records, draw), field, [*items, item], pattern)


def unknown_gold_id(records: list[Record], draw: Draw) -> Corrupted:
    gold = "not-in-corpus:" + draw(IDS)
    message = f"gold id {gold!r} is not a passage id of the corpus"
    return replace_field(records, any_index(records, draw), "gold_ids", [gold], f"^{re.escape(message)}$")


def empty_turns(records: list[Record], draw: Draw) -> Corrupted:
    pattern = "^field 'turns' must be a non-empty list"
    return replace_field(records, any_index(records, draw), "turns", [], pattern)


QUESTION_CORRUPTIONS: list[Corruption] = [
    *COMMON,
    duplicate_id("question"),
    missing(["id"]),
    missing_question,
    question_and_turns,
    wrong_string(["id", "question"], NON_STRINGS),
    blank_string(["id", "question"]),
    wrong_list,
    wrong_list_item,
    unknown_gold_id,
    empty_turns,
    lone_surrogate(["id", "question"]),
]


@st.composite
def corrupted_files(draw: Draw, records: list[Record], corruptions: list[Corruption]) -> Corrupted:
    """One corruption, then blank lines mixed in at or before the bad line; the reported line counts them."""
    lines, bad, pattern, cut_short, blanks_from = draw(st.sampled_from(corruptions))(records, draw)
    blanks = draw(st.lists(BLANK.map(str.encode), max_size=3))
    at = draw(st.integers(blanks_from, bad - 1))
    return Corrupted([*lines[:at], *blanks, *lines[at:]], bad + len(blanks), pattern, cut_short)


def write_corrupted(path: Path, corrupted: Corrupted, crlf: bool = False) -> Path:
    return write(path, corrupted.lines, b"\r\n" if crlf else b"\n", final_newline=not corrupted.cut_short)


@SETTINGS
@given(data=st.data(), corpus=corpora(), crlf=st.booleans())
def test_a_corrupted_corpus_fails_on_its_bad_line(workdir: Path, data: st.DataObject, corpus: list[Record], crlf: bool):
    corrupted = data.draw(corrupted_files(corpus, CORPUS_CORRUPTIONS))
    path = write_corrupted(workdir / "corpus.jsonl", corrupted, crlf)
    with pytest.raises(DataValidationError) as info:
        read_corpus(path)
    assert_reported(info.value, path, corrupted.bad_line, corrupted.pattern)


@SETTINGS
@given(data=st.data(), corpus_ids=st.lists(IDS, min_size=1, max_size=4, unique=True), crlf=st.booleans())
def test_a_corrupted_question_file_fails_on_its_bad_line(
    workdir: Path, data: st.DataObject, corpus_ids: list[str], crlf: bool
):
    corrupted = data.draw(corrupted_files(data.draw(question_sets(corpus_ids)), QUESTION_CORRUPTIONS))
    path = write_corrupted(workdir / "eval.jsonl", corrupted, crlf)
    with pytest.raises(DataValidationError) as info:
        read_questions(path, set(corpus_ids))
    assert_reported(info.value, path, corrupted.bad_line, corrupted.pattern)


@SETTINGS
@given(data=st.data(), corpus=corpora())
def test_load_jsonl_data_names_the_file_at_fault(workdir: Path, data: st.DataObject, corpus: list[Record]):
    """Through the public entry point too, the error names which of the three files is bad."""
    corpus_ids = [r["id"] for r in corpus]
    files = {
        "corpus": (corpus, CORPUS_CORRUPTIONS),
        "train": (data.draw(question_sets(corpus_ids)), QUESTION_CORRUPTIONS),
        "eval": (data.draw(question_sets(corpus_ids)), QUESTION_CORRUPTIONS),
    }
    victim = data.draw(st.sampled_from(sorted(files)))
    paths = {name: write(workdir / f"{name}.jsonl", [encode(r) for r in rs]) for name, (rs, _) in files.items()}
    corrupted = data.draw(corrupted_files(*files[victim]))
    write_corrupted(paths[victim], corrupted)
    with pytest.raises(DataValidationError) as info:
        load_jsonl_data(paths["corpus"], paths["train"], paths["eval"])
    assert_reported(info.value, paths[victim], corrupted.bad_line, corrupted.pattern)


@SETTINGS
@given(blanks=st.lists(BLANK, max_size=4), bom=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
def test_a_file_without_records_is_empty(workdir: Path, blanks: list[str], bom: bool, newline: str):
    path = workdir / "corpus.jsonl"
    path.write_bytes((BOM if bom else b"") + newline.join(blanks).encode())
    with pytest.raises(DataValidationError) as info:
        read_corpus(path)
    assert_reported(info.value, path, None, r"^file is empty \(expected one JSON object per line\)$")


# --- arbitrary bytes -------------------------------------------------------------------------


def load_or_report(path: Path, raw: bytes) -> None:
    """Load ``raw`` as corpus and as questions: either it loads or it is a located DataValidationError."""
    path.write_bytes(raw)
    n_lines = raw.count(b"\n") + 1
    for read in (read_corpus, lambda p: read_questions(p, {"p1", "p2"})):
        try:
            loaded = read(path)
        except DataValidationError as error:
            assert error.path == str(path)
            assert error.line is None or 1 <= error.line <= n_lines, (error.line, n_lines)
            assert str(error).startswith(f"{path}: " if error.line is None else f"{path} line {error.line}: ")
            assert error.message and "\n" not in error.message
        else:
            assert loaded and all(item.id.strip() and item.text.strip() for item in loaded)


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_raise_a_located_data_error(workdir: Path, raw: bytes):
    load_or_report(workdir / "bytes.jsonl", raw)


# Valid both as a corpus and as questions over {"p1", "p2"}, so edits can fail anywhere.
VALID_FILE = (
    b'{"id": "p1", "text": "caf\xc3\xa9", "title": "T", "question": "Q?", "answers": ["a"], "gold_ids": ["p1"]}\n'
    b'{"id": "p2", "text": "x", "question": "Who?", "answers": null, "gold_ids": ["p2", "p1"], "n": 1.5e3}\n'
)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_FILE)), st.binary(max_size=3), st.integers(0, 3)), max_size=4))
def test_random_edits_of_a_valid_file_load_or_raise_a_located_data_error(workdir: Path, edits: list[Any]):
    """Near-valid bytes reach deeper into the loader than uniform noise: splice bytes in, cut bytes out."""
    raw = VALID_FILE
    for at, insert, cut in edits:
        raw = raw[:at] + insert + raw[at + cut :]
    load_or_report(workdir / "edited.jsonl", raw)
