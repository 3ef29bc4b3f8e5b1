"""Every format's loader reads back what the converter wrote: the same passages and questions as the source.

The fixture goes through each writer of :mod:`ragdistill.data.convert` and back through its ``data=`` loader
(and the MS MARCO files once more as an ``ir_datasets`` id). Identical data gives identical figures for the
same retriever; ``benchmarks/format_agreement.py`` measures that end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate

from ragdistill.data.convert import WRITERS, tsv_safe
from ragdistill.data.fixture import load_fixture
from ragdistill.data.irds import register_msmarco_layout
from ragdistill.data.schemas import RetrievalData

KEEPS_ANSWERS = {"jsonl", "dpr", "hf"}
KEEPS_TITLES = {"jsonl", "beir", "dpr", "hf"}
KEEPS_QUESTION_IDS = {"jsonl", "beir", "msmarco", "hf", "ir_datasets"}


@pytest.fixture(scope="module")
def source() -> RetrievalData:
    data, _ = tsv_safe(load_fixture())
    return data


def _load(compose_at, tmp: Path, overrides: list[str]) -> RetrievalData:
    cfg = compose_at("config", overrides, tmp / "run")
    return instantiate(cfg.data)


def _view(data: RetrievalData, fmt: str) -> dict[str, Any]:
    """What a format can carry: passages with or without titles, questions with or without ids and answers."""
    return {
        "corpus": [(p.id, p.text, p.title if fmt in KEEPS_TITLES else "") for p in data.corpus],
        "eval": [
            (
                q.id if fmt in KEEPS_QUESTION_IDS else i,
                q.text,
                q.answers if fmt in KEEPS_ANSWERS else (),
                q.gold_ids,
            )
            for i, q in enumerate(data.eval)
        ],
        "train": [(q.text, q.gold_ids) for q in data.train],
    }


@pytest.mark.parametrize("fmt", [*WRITERS, "ir_datasets"])
def test_each_format_reads_back_the_data_it_was_written_from(fmt, source, tmp_path, compose_at) -> None:
    writer = WRITERS["msmarco" if fmt == "ir_datasets" else fmt]
    overrides = writer(source, tmp_path / fmt)
    if fmt == "ir_datasets":
        register_msmarco_layout(f"ragdistill-agreement/{tmp_path.name}", tmp_path / fmt)
        overrides = ["data=ir_datasets", f"data.id=ragdistill-agreement/{tmp_path.name}"]
    loaded = _load(compose_at, tmp_path, overrides)
    expected = _view(source, fmt)
    got = _view(loaded, fmt)
    assert got["corpus"] == expected["corpus"]
    assert got["eval"] == expected["eval"]
    if fmt != "ir_datasets":  # one id is one split; the train split would be a second id
        assert got["train"] == expected["train"]


def test_tsv_safe_turns_tabs_and_line_breaks_into_spaces_trims_and_counts() -> None:
    from ragdistill.data.schemas import Passage, Question

    data = RetrievalData("x", [Passage("p", "a\tb\r\nc ", "t\t1")], [], [Question("q", " why\n?", gold_ids=("p",))])
    safe, changed = tsv_safe(data)
    assert (safe.corpus[0].text, safe.corpus[0].title, safe.eval[0].text) == ("a b c", "t 1", "why ?")
    assert changed == 3
