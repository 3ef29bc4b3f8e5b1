"""Tiny LMs built from a config (random weights) wrapped as :class:`LanguageModel`, for fast teacher tests."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from ragdistill.models.lm import LanguageModel
from ragdistill.models.locate import resolve_model_path


@pytest.fixture(scope="session")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("packaged:all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def tiny_llama(bert_tokenizer) -> LanguageModel:
    """2 layers, 4 query heads sharing 2 key/value heads (grouped-query attention, like SmolLM2)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bert_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
        pad_token_id=bert_tokenizer.pad_token_id,
    )
    return LanguageModel.from_objects(LlamaForCausalLM(config), bert_tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_t5(bert_tokenizer) -> LanguageModel:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=bert_tokenizer.vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=bert_tokenizer.pad_token_id,
        decoder_start_token_id=bert_tokenizer.pad_token_id,
        eos_token_id=bert_tokenizer.sep_token_id,
    )
    return LanguageModel.from_objects(T5ForConditionalGeneration(config), bert_tokenizer, name="tiny-t5")
