import runpy
from pathlib import Path

import pytest

from ragdistill.data.fixture import FIXTURE_FILES, fixture_dir, load_fixture
from ragdistill.data.squad import load_squad_open


def test_fixture_loads_with_gold_ids_in_corpus() -> None:
    data = load_fixture()
    assert data.name == "fixture"
    assert 150 <= len(data.corpus) <= 250
    assert len(data.train) == 120
    assert len(data.eval) == 60
    corpus_ids = {p.id for p in data.corpus}
    for q in [*data.train, *data.eval]:
        assert q.gold_ids
        assert set(q.gold_ids) <= corpus_ids
        assert q.answers
    assert not {q.id for q in data.train} & {q.id for q in data.eval}
    assert all(p.id.startswith("dev-") and p.title for p in data.corpus)


def test_fixture_subsampling_is_deterministic() -> None:
    first = load_fixture(n_train=10, n_eval=5, seed=1)
    assert (len(first.train), len(first.eval)) == (10, 5)
    assert first.train == load_fixture(n_train=10, n_eval=5, seed=1).train
    assert first.train != load_fixture(n_train=10, n_eval=5, seed=2).train


def test_fixture_is_small_and_attributed() -> None:
    folder = Path(str(fixture_dir()))
    sizes = sum((folder / name).stat().st_size for name in FIXTURE_FILES)
    assert sizes < 400_000
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in attribution
    assert "Rajpurkar" in attribution


def test_make_fixture_reproduces_the_shipped_files(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_fixture.py"
    if not script.is_file():
        pytest.skip("scripts/ is not part of an installed package")
    runpy.run_path(str(script), run_name="make_fixture")["main"](["--out", str(tmp_path)])
    folder = Path(str(fixture_dir()))
    for name in (*FIXTURE_FILES, "ATTRIBUTION.md"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


@pytest.mark.slow
def test_fixture_agrees_with_squad_open() -> None:
    fixture = load_fixture()
    squad = load_squad_open(n_eval=None)
    assert all(squad.passage(p.id) == p for p in fixture.corpus)
    dev = {q.id: q for q in squad.eval}
    assert all(dev[q.id] == q for q in [*fixture.train, *fixture.eval])
