"""The ``ir_datasets`` loader (``data=ir_datasets``): an id read as the same data as its files, located errors.

The shipped MS MARCO fixture is registered as an ``ir_datasets`` data set over its local files (as a user's
own or already downloaded collection would be), so the test runs offline and can compare the two loaders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from ragdistill.config_check import check_config
from ragdistill.data.errors import DataValidationError
from ragdistill.data.irds import load_ir_datasets, register_msmarco_layout
from ragdistill.data.msmarco import load_msmarco

MSMARCO = Path(__file__).resolve().parents[1] / "fixtures" / "msmarco"
PREFIX = "ragdistill-fixture/msmarco"


def _register(name: str, split: str, collection: Path = MSMARCO / "collection.tsv") -> None:
    register_msmarco_layout(name, MSMARCO, split, collection)


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    _register(f"{PREFIX}/dev", "dev")
    _register(f"{PREFIX}/train", "train")


def test_an_id_loads_as_the_same_data_as_its_files() -> None:
    by_id = load_ir_datasets(f"{PREFIX}/dev", train_id=f"{PREFIX}/train")
    from_files = load_msmarco(MSMARCO, eval_split="dev", train_split="train")
    assert by_id.corpus == from_files.corpus
    assert by_id.eval == from_files.eval
    assert by_id.train == from_files.train
    assert by_id.name == f"{PREFIX}/dev"


def test_an_unknown_id_is_named() -> None:
    with pytest.raises(DataValidationError, match=r"^no-such/set: not an ir_datasets id"):
        load_ir_datasets("no-such/set")


def test_files_not_on_disk_fail_in_one_line_saying_where_they_are_looked_for(tmp_path: Path) -> None:
    _register(f"{PREFIX}/missing", "dev", collection=tmp_path / "absent.tsv")
    with pytest.raises(DataValidationError) as caught:
        load_ir_datasets(f"{PREFIX}/missing")
    message = str(caught.value)
    assert message.startswith(f"{PREFIX}/missing: its docs are not on disk and could not be fetched")
    assert "IR_DATASETS_HOME" in message and "\n" not in message


def test_a_bad_record_is_named_by_id_and_row(tmp_path: Path) -> None:
    lines = (MSMARCO / "collection.tsv").read_text().splitlines()
    lines.append(lines[0])  # a duplicate passage id at the end
    (tmp_path / "collection.tsv").write_text("\n".join(lines) + "\n")
    _register(f"{PREFIX}/duplicate", "dev", collection=tmp_path / "collection.tsv")
    first = lines[0].split("\t")[0]
    with pytest.raises(
        DataValidationError, match=rf"docs row {len(lines) - 1}: duplicate passage id '{first}' \(first seen on row 0\)"
    ):
        load_ir_datasets(f"{PREFIX}/duplicate")


def test_the_config_composes_checks_and_loads(compose_cfg) -> None:
    cfg = compose_cfg("config", ["data=ir_datasets", f"data.id={PREFIX}/dev", "data.n_eval=3"])
    check_config(cfg, ("data",))
    data = instantiate(cfg.data)
    assert len(data.eval) == 3 and not data.train
