"""Compose configs the way the CLI does, but on CPU, with small limits and a tmp run dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ragdistill.cli import CONFIG_PATH
from ragdistill.utils.quiet import quiet_third_party

CPU_OVERRIDES = ["trainer=cpu", "datamodule.num_workers=0"]


def compose_config(config_name: str, overrides: list[str], run_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides; the run dir and cache go to ``run_dir``."""
    GlobalHydra.instance().clear()
    extra = CPU_OVERRIDES if config_name == "config" else []
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*extra, *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(run_dir / "cache")
    return cfg


@pytest.fixture(autouse=True, scope="session")
def _quiet() -> None:
    quiet_third_party()


@pytest.fixture(scope="session")
def compose_at():
    """``compose_at(name, overrides, run_dir)`` for module-scoped fixtures that pick their own run dir."""
    return compose_config


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """``compose_cfg(name, overrides)`` → a composed config whose run dir is a fresh tmp dir."""

    def make(config_name: str = "config", overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, overrides or [], tmp_path / "run")

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer: a model folder in milliseconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragdistill.models.locate import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("packaged:all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide Llama with random weights and MiniLM's tokenizer: an LM folder for ``lm=hf``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ragdistill.models.locate import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("packaged:all-MiniLM-L6-v2"))
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
