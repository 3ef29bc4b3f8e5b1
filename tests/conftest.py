"""Compose configs the way the CLI does, but on CPU, with small limits and a tmp run dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
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
def make_bert_tokenizer() -> Callable[[], Any]:
    """``make()`` → a fresh MiniLM BERT tokenizer (every tiny model's vocabulary), for a test that changes it."""
    from transformers import AutoTokenizer

    from ragdistill.models.locate import resolve_model_path

    path = resolve_model_path("packaged:all-MiniLM-L6-v2")
    return lambda: AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def bert_tokenizer(make_bert_tokenizer):
    """MiniLM's BERT tokenizer, shared by the session's tiny models: never change it (see ``make_bert_tokenizer``)."""
    return make_bert_tokenizer()


def seeded_model(model_class: Any, config_class: Any, tokenizer: Any, **config: Any) -> Any:
    """``model_class`` over the tokenizer's vocabulary, its random weights drawn after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return model_class(config_class(vocab_size=tokenizer.vocab_size, **config))


@pytest.fixture(scope="session")
def build_tiny_llama() -> Callable[[Any], Any]:
    """``build(tokenizer)`` → a 2-layer, 32-wide Llama with seeded random weights over the tokenizer's vocabulary.

    4 query heads share 2 key/value heads (grouped-query attention, like SmolLM2); its pad token is the
    tokenizer's (``None`` when the tokenizer has none).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(tokenizer: Any) -> Any:
        sizes = {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64, "max_position_embeddings": 2048}
        heads = {"num_attention_heads": 4, "num_key_value_heads": 2}
        return seeded_model(
            LlamaForCausalLM, LlamaConfig, tokenizer, **sizes, **heads, pad_token_id=tokenizer.pad_token_id
        )

    return build


@pytest.fixture(scope="session")
def build_tiny_t5() -> Callable[[Any], Any]:
    """``build(tokenizer)`` → a 2+2-layer, 32-wide T5 with seeded random weights; decoding starts on the pad token."""
    from transformers import T5Config, T5ForConditionalGeneration

    def build(tokenizer: Any) -> Any:
        sizes = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4}
        tokens = {"pad_token_id": tokenizer.pad_token_id, "decoder_start_token_id": tokenizer.pad_token_id}
        return seeded_model(
            T5ForConditionalGeneration, T5Config, tokenizer, **sizes, **tokens, eos_token_id=tokenizer.sep_token_id
        )

    return build


@pytest.fixture(scope="session")
def save_model_dir(tmp_path_factory) -> Callable[[str, Any, Any], Path]:
    """``save(name, model, tokenizer)`` → a fresh tmp model folder holding both, as ``from_pretrained`` reads it."""

    def save(name: str, model: Any, tokenizer: Any) -> Path:
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    return save


@pytest.fixture(scope="session")
def tiny_encoder_dir(bert_tokenizer, save_model_dir) -> Path:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer: a model folder in milliseconds."""
    from transformers import BertConfig, BertModel

    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    model = seeded_model(BertModel, BertConfig, bert_tokenizer, **sizes, max_position_embeddings=512)
    return save_model_dir("tiny_bert", model, bert_tokenizer)


@pytest.fixture(scope="session")
def tiny_lm_dir(bert_tokenizer, build_tiny_llama, save_model_dir) -> Path:
    """The tiny Llama of ``build_tiny_llama`` with MiniLM's tokenizer: an LM folder for ``lm=hf``."""
    return save_model_dir("tiny_llama", build_tiny_llama(bert_tokenizer), bert_tokenizer)
