"""PEAR beyond Llama-style ``self_attn.o_proj``: GPT-2's ``Conv1D``, ALiBi models (BLOOM, MPT, Falcon), and refusals.

Each tiny model is built from its transformers config (2 layers, 4 heads of width 8, random weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ragdistill.reader.pear import PearSettings, apply_pear, run_pear
from ragdistill.reader.pear_heads import fold_coefficients, head_layout, mean_ablated, record_layers, scaled_heads

VOCAB = 120
COEFFICIENTS = {(0, 1): 0.3, (1, 0): 1.7, (1, 3): -0.5}


def _build(name: str, vocab: int = VOCAB) -> nn.Module:
    import transformers as tf

    sizes: dict[str, tuple[Any, Any, dict[str, Any]]] = {
        "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel, {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128}),
        "gpt_bigcode": (tf.GPTBigCodeConfig, tf.GPTBigCodeForCausalLM, {"n_embd": 32, "n_layer": 2, "n_head": 4}),
        "gpt_neox": (
            tf.GPTNeoXConfig,
            tf.GPTNeoXForCausalLM,
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
        ),
        "falcon_alibi": (
            tf.FalconConfig,
            tf.FalconForCausalLM,
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "alibi": True},
        ),
        "bloom": (tf.BloomConfig, tf.BloomForCausalLM, {"hidden_size": 32, "n_layer": 2, "n_head": 4}),
        "mpt": (tf.MptConfig, tf.MptForCausalLM, {"d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 128}),
        "opt": (
            tf.OPTConfig,
            tf.OPTForCausalLM,
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 64},
        ),
        "gptj": (tf.GPTJConfig, tf.GPTJForCausalLM, {"n_embd": 32, "n_layer": 2, "n_head": 4, "rotary_dim": 4}),
        "phi": (
            tf.PhiConfig,
            tf.PhiForCausalLM,
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
        ),
    }
    config_class, model_class, config = sizes[name]
    torch.manual_seed(0)
    tokens = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    return model_class(config_class(vocab_size=vocab, **config, **tokens)).eval()


PROJECTIONS = {
    "gpt2": "transformer.h.1.attn.c_proj",
    "gpt_bigcode": "transformer.h.1.attn.c_proj",
    "gpt_neox": "gpt_neox.layers.1.attention.dense",
    "falcon_alibi": "transformer.h.1.self_attention.dense",
    "bloom": "transformer.h.1.self_attention.dense",
    "mpt": "transformer.blocks.1.attn.out_proj",
    "opt": "model.decoder.layers.1.self_attn.out_proj",
    "gptj": "transformer.h.1.attn.out_proj",
    "phi": "model.layers.1.self_attn.dense",
}


@pytest.fixture(params=sorted(PROJECTIONS))
def model(request) -> tuple[str, nn.Module]:
    return request.param, _build(request.param)


def _ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def test_layout_finds_each_architectures_attention_output_projection(model):
    name, decoder = model
    layout = head_layout(decoder)
    assert (layout.num_layers, layout.num_heads, layout.head_dim) == (2, 4, 8)
    assert layout.projections[1] is decoder.get_submodule(PROJECTIONS[name])
    assert isinstance(layout.projections[0], Conv1D) == (name == "gpt2")


def test_folding_equals_the_hooked_model(model):
    _, decoder = model
    ids = _ids()
    layout = head_layout(decoder)
    with scaled_heads(layout, COEFFICIENTS):
        hooked = _logits(decoder, ids)
    original = _logits(decoder, ids)
    shapes = [(n, tuple(p.shape)) for n, p in decoder.named_parameters()]
    fold_coefficients(decoder, COEFFICIENTS)
    folded = _logits(decoder, ids)
    torch.testing.assert_close(folded, hooked, atol=1e-5, rtol=0)
    assert (folded - original).abs().max() > 1e-3
    assert [(n, tuple(p.shape)) for n, p in decoder.named_parameters()] == shapes
    assert all(not m._forward_pre_hooks for m in decoder.modules())


def test_gpt2_folds_the_rows_of_its_conv1d_weight():
    decoder = _build("gpt2")
    projection = decoder.get_submodule("transformer.h.0.attn.c_proj")
    before = projection.weight.detach().clone()  # [in = heads × 8, out = 32]
    fold_coefficients(decoder, {(0, 1): 0.3})
    expected = before.clone()
    expected[8:16, :] *= 0.3  # head 1 is inputs 8..15: rows of a Conv1D weight, not columns
    assert torch.equal(projection.weight, expected)


def test_mean_ablation_replaces_a_gpt2_heads_input_slice():
    decoder, ids = _build("gpt2"), _ids()
    layout = head_layout(decoder)
    with torch.no_grad(), record_layers(layout) as record:
        decoder(input_ids=ids)
    seen: dict[str, torch.Tensor] = {}
    handle = layout.projections[1].register_forward_hook(lambda _m, args, _out: seen.update(x=args[0]))
    with torch.no_grad(), mean_ablated(layout, 1, 2, record.means[1]):
        decoder(input_ids=ids)
    handle.remove()
    assert torch.equal(seen["x"][..., 16:24], record.means[1][16:24].expand(3, 12, 8))


@pytest.mark.parametrize("name", ["gpt2", "bloom"])
def test_run_pear_on_a_learned_position_and_an_alibi_model(name, bert_tokenizer):
    decoder = _build(name, vocab=bert_tokenizer.vocab_size)
    settings = PearSettings(n_heads=2, sequences=3, length=6, steps=3, score_lengths=(5, 8), score_sequences=4)
    result = run_pear((decoder, bert_tokenizer), settings, progress=False)
    assert len(result.scores) == 8 and 1 <= len(result.heads) <= 2
    ids = _ids()
    with scaled_heads(head_layout(decoder), result.coefficients):
        hooked = _logits(decoder, ids)
    apply_pear(decoder, result)
    torch.testing.assert_close(_logits(decoder, ids), hooked, atol=1e-5, rtol=0)


def _one_line_refusal(build: Callable[[], nn.Module], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as caught:
        head_layout(build())
    assert "\n" not in str(caught.value)


def test_an_encoder_decoder_model_is_refused():
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
    )  # fmt: skip
    _one_line_refusal(lambda: BartForConditionalGeneration(config), r"^BartForConditionalGeneration .* encoder-decoder")


def test_blooms_slow_but_exact_path_is_refused():
    def build() -> nn.Module:
        decoder = _build("bloom")
        decoder.config.pretraining_tp, decoder.config.slow_but_exact = 2, True
        return decoder

    _one_line_refusal(build, r"^BloomForCausalLM .*slow_but_exact=True .*hooks would never see the heads")


def test_a_model_without_a_known_projection_is_refused():
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        is_decoder=True,
    )  # fmt: skip
    _one_line_refusal(lambda: BertLMHeadModel(config), r"^BertLMHeadModel .*no single stack .*known: layers\.<i>")


def test_a_projection_that_is_not_linear_is_refused():
    class Quantised(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    def build() -> nn.Module:
        decoder = _build("gpt_neox")
        for layer in decoder.gpt_neox.layers:
            layer.attention.dense = Quantised(layer.attention.dense)
        return decoder

    _one_line_refusal(build, r"^GPTNeoXForCausalLM .*is a Quantised, not an nn\.Linear or Conv1D")


def test_a_width_that_is_not_heads_times_head_dim_is_refused():
    def build() -> nn.Module:
        decoder = _build("gpt2")
        decoder.config.n_head = 3  # 3 × (32 // 3) = 30 != 32 inputs
        return decoder

    _one_line_refusal(build, r"^GPT2LMHeadModel .*takes \[32\] inputs, not num_attention_heads \(3\) × head_dim \(10\)")


class _Block(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.add_module(name, nn.Linear(8, 8))


class _TwoTowers(nn.Module):
    """A text stack (``layers.<i>.self_attn.o_proj``) beside a vision one (``vision.layers.<i>.self_attn.out_proj``)."""

    def __init__(self, text: int, vision: int) -> None:
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(num_attention_heads=2, hidden_size=8, num_hidden_layers=text, model_type="two")
        self.layers = nn.ModuleList([_Block("o_proj") for _ in range(text)])
        self.vision = nn.Module()
        self.vision.layers = nn.ModuleList([_Block("out_proj") for _ in range(vision)])


def test_the_text_stack_is_told_from_a_vision_tower_by_depth_and_ambiguity_is_refused():
    towers = _TwoTowers(text=2, vision=3)
    assert head_layout(towers).projections == tuple(block.self_attn.o_proj for block in towers.layers)
    _one_line_refusal(lambda: _TwoTowers(text=2, vision=2), r"^_TwoTowers .*no single stack .*found layers\.<i>")
