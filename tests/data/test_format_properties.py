"""Property-based tests of every format's loader, as the JSONL loader's: valid data round-trips, bad files fail located.

Random data sets are written by :mod:`ragdistill.data.convert` and loaded back by each format's loader; then
one line of one written file is corrupted (a field dropped, emptied or replaced by an unknown id, a line
repeated, bytes that are not UTF-8), and loading must either succeed or raise ``DataValidationError``
naming that file or one that refers to what it lost; never a raw ``KeyError``, ``IndexError``,
``ValueError`` or ``UnicodeDecodeError`` from inside a loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ragdistill.data.convert import WRITERS, tsv_safe
from ragdistill.data.errors import DataValidationError
from ragdistill.data.schemas import Passage, Question, RetrievalData

# no shrinking: a failing example is small already, and shrinking through file writes takes minutes
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=6)
# any text a TSV can hold once made safe; a lone surrogate is not text
TEXTS = st.text(min_size=1, max_size=20).map(lambda t: t.replace('"', "'")).filter(lambda t: t.strip())
FILE_FORMATS = ("jsonl", "beir", "msmarco", "dpr")


@st.composite
def data_sets(draw: Any) -> RetrievalData:
    ids = draw(st.lists(IDS, min_size=2, max_size=6, unique=True))
    corpus = [Passage(pid, draw(TEXTS), draw(TEXTS)) for pid in ids]
    qids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    questions = [
        Question(
            f"q{qid}",
            draw(TEXTS),
            answers=tuple(draw(st.lists(TEXTS, max_size=2, unique=True))),
            gold_ids=tuple(draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True))),
        )
        for qid in qids
    ]
    safe, _ = tsv_safe(RetrievalData("random", corpus, [], questions))
    return safe


def _load(overrides: list[str]) -> RetrievalData:
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides)
    try:
        return instantiate(cfg.data)
    except InstantiationException as error:  # Hydra wraps what the loader raised; the CLI shows the loader's
        raise error.__cause__ from None  # type: ignore[misc]


def _view(data: RetrievalData, fmt: str) -> list[Any]:
    keeps_answers = fmt in ("jsonl", "dpr", "hf")
    passages = [(p.id, p.text, p.title if fmt != "msmarco" else "") for p in data.corpus]
    questions = [(q.text, q.gold_ids, q.answers if keeps_answers else ()) for q in data.eval]
    return [passages, questions]


@pytest.mark.parametrize("fmt", list(WRITERS))
@SETTINGS
@given(data=data_sets())
def test_valid_data_loads_back_exactly(fmt: str, data: RetrievalData, tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp(fmt)
    loaded = _load(WRITERS[fmt](data, folder))
    assert _view(loaded, fmt) == _view(data, fmt)


CORRUPTIONS = ("drop_last_field", "empty_first_field", "unknown_id", "repeat_line", "bad_utf8", "truncate")


def _corrupt(line: bytes, how: str, separator: bytes) -> list[bytes]:
    fields = line.split(separator)
    if how == "drop_last_field":
        return [separator.join(fields[:-1])] if len(fields) > 1 else [b""]
    if how == "empty_first_field":
        return [separator.join([b"", *fields[1:]])]
    if how == "unknown_id":
        return [separator.join([b"zz-no-such-id", *fields[1:]])]
    if how == "repeat_line":
        return [line, line]
    if how == "bad_utf8":
        return [line[: len(line) // 2] + b"\xff\xfe" + line[len(line) // 2 :]]
    return [line[: max(1, len(line) // 3)]]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
@SETTINGS
@given(data=data_sets(), choice=st.data())
def test_a_corrupted_line_loads_or_fails_naming_its_file(
    fmt: str, data: RetrievalData, choice: Any, tmp_path_factory
) -> None:
    folder = tmp_path_factory.mktemp(fmt)
    overrides = WRITERS[fmt](data, folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    target = choice.draw(st.sampled_from(files))
    lines = target.read_bytes().splitlines()
    index = choice.draw(st.integers(0, len(lines) - 1))
    how = choice.draw(st.sampled_from(CORRUPTIONS))
    separator = b"\t" if target.suffix == ".tsv" else (b" " if "qrels." in target.name else b",")
    lines[index : index + 1] = _corrupt(lines[index], how, separator)
    target.write_bytes(b"\n".join(lines) + b"\n")
    try:
        _load(overrides)
    except DataValidationError as error:
        # the corrupted file, or one that refers to what the corruption removed (a qrels row, a DPR context)
        assert Path(error.path).name in {path.name for path in files}, (how, str(error))
        assert str(error).startswith(error.path)
        assert "\n" not in str(error)
