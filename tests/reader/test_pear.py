"""PEAR on tiny random-weight Llama, Qwen2 and Gemma3 decoders: hooks, folding, the copy task, the cache.

The head metric itself is tested in ``test_pear_scoring.py``, the other model layouts in ``test_pear_layouts.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import ragdistill.reader.pear as pear_module
from ragdistill.models.lm import LanguageModel
from ragdistill.reader.pear import COEFFICIENTS_FILE, PearSettings, apply_pear, pear_key, pear_task, run_pear
from ragdistill.reader.pear_copy import IGNORE_INDEX, copy_loss, copy_scores, copy_task
from ragdistill.reader.pear_heads import (
    edit_head_inputs,
    fold_coefficients,
    head_layout,
    mean_ablated,
    record_layers,
    scaled_heads,
    skip_layers,
)
from ragdistill.reader.pear_scoring import learn_coefficients, score_heads
from ragdistill.utils.manifest import MANIFEST_FILE

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64}
HEADS = {"num_attention_heads": 4, "num_key_value_heads": 2}
COEFFICIENTS = {(0, 1): 0.3, (1, 0): 1.7, (1, 3): -0.5}
SETTINGS = PearSettings(n_heads=3, sequences=3, length=6, steps=4, lr=0.1, seed=0, score_sequences=8)


def _qwen2(vocab: int) -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, **SIZES, **HEADS))


def _gemma3(vocab: int) -> nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    # head_dim 16 != hidden 32 / 4 heads: the layout must read it from the config
    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=vocab, **SIZES, **HEADS, head_dim=16))


@pytest.fixture(params=["llama", "qwen2", "gemma3"])
def decoder(request, bert_tokenizer, build_tiny_llama) -> nn.Module:
    """A fresh tiny decoder of each family (tests fold weights in place), in eval mode."""
    torch.manual_seed(0)
    builders: dict[str, Callable[[], nn.Module]] = {
        "llama": lambda: build_tiny_llama(bert_tokenizer),
        "qwen2": lambda: _qwen2(bert_tokenizer.vocab_size),
        "gemma3": lambda: _gemma3(bert_tokenizer.vocab_size),
    }
    return builders[request.param]().eval()


@pytest.fixture
def llama(bert_tokenizer, build_tiny_llama) -> nn.Module:
    return build_tiny_llama(bert_tokenizer).eval()


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.randint(1000, 2000, (3, 12), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def _structure(model: nn.Module) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(name, type(m).__name__, ()) for name, m in model.named_modules()] + [
        (name, "param", tuple(p.shape)) for name, p in model.named_parameters()
    ]


def test_layout_reads_layers_heads_and_head_dim(decoder):
    layout = head_layout(decoder)
    assert (layout.num_layers, layout.num_heads) == (2, 4)
    assert layout.head_dim == (16 if decoder.config.model_type.startswith("gemma") else 8)
    assert all(p.in_features == 4 * layout.head_dim for p in layout.projections)
    assert layout.columns(2) == slice(2 * layout.head_dim, 3 * layout.head_dim)


def test_folded_model_equals_the_hooked_one_with_the_same_structure(decoder):
    ids = _inputs()
    layout = head_layout(decoder)
    with scaled_heads(layout, COEFFICIENTS):
        hooked = _logits(decoder, ids)
    before, count = _structure(decoder), sum(p.numel() for p in decoder.parameters())
    original = _logits(decoder, ids)
    fold_coefficients(decoder, COEFFICIENTS)
    folded = _logits(decoder, ids)
    torch.testing.assert_close(folded, hooked, atol=1e-5, rtol=0)
    assert (folded - original).abs().max() > 1e-3  # the coefficients do change the model
    assert _structure(decoder) == before  # same modules, same parameter names and shapes
    assert sum(p.numel() for p in decoder.parameters()) == count
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in decoder.modules())


def test_unit_coefficients_leave_the_logits_unchanged(decoder):
    ids = _inputs()
    layout = head_layout(decoder)
    ones = {(layer, head): 1.0 for layer in range(layout.num_layers) for head in range(layout.num_heads)}
    with scaled_heads(layout, ones):
        scaled = _logits(decoder, ids)
    assert torch.equal(scaled, _logits(decoder, ids))


def _o_proj_io(model: nn.Module, layer: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of layer ``layer``'s o_proj in one pass (after any other hook's edit)."""
    seen: dict[str, torch.Tensor] = {}
    projection = head_layout(model).projections[layer]
    handle = projection.register_forward_hook(lambda _m, args, out: seen.update(x=args[0], y=out))
    try:
        _logits(model, ids)
    finally:
        handle.remove()
    return seen["x"], seen["y"]


def test_mean_ablation_changes_the_output_only_through_that_heads_slice(decoder):
    ids = _inputs()
    layout = head_layout(decoder)
    with torch.no_grad(), record_layers(layout) as record:
        decoder(input_ids=ids)
    x, y = _o_proj_io(decoder, 1, ids)
    with mean_ablated(layout, 1, 2, record.means[1]):
        x_ablated, y_ablated = _o_proj_io(decoder, 1, ids)
    columns = layout.columns(2)
    others = torch.ones(x.shape[-1], dtype=torch.bool)
    others[columns] = False
    assert torch.equal(x_ablated[..., others], x[..., others])
    assert torch.equal(x_ablated[..., columns], record.means[1][columns].expand_as(x[..., columns]))
    # the o_proj output moves by exactly (mean − x_h) W_hᵀ
    change = (x_ablated[..., columns] - x[..., columns]) @ layout.projections[1].weight[:, columns].T
    torch.testing.assert_close(y_ablated - y, change, atol=1e-5, rtol=0)
    assert not layout.projections[1]._forward_pre_hooks


def test_skipping_recorded_layers_gives_the_full_pass_loss(llama):
    batch = copy_task(5000, 3, 6, seed=0)
    layout = head_layout(llama)
    with torch.no_grad(), record_layers(layout) as record:
        clean = copy_loss(llama, batch)
    with torch.no_grad(), mean_ablated(layout, 1, 3, record.means[1]):
        full = copy_loss(llama, batch)
        with skip_layers(layout, record, 1):
            skipped = copy_loss(llama, batch)
    assert torch.equal(skipped, full) and not torch.equal(full, clean)
    assert "forward" not in vars(layout.layers[0])  # the class's forward is back


def test_copy_task_masks_the_first_half(bert_tokenizer, llama):
    batch = copy_task(bert_tokenizer, 5, 7, seed=3)
    assert batch.input_ids.shape == (5, 14)  # the BERT tokenizer has no bos token: no prefix
    first, second = batch.input_ids[:, :7], batch.input_ids[:, 7:]
    assert torch.equal(first, second)
    assert (batch.labels[:, :7] == IGNORE_INDEX).all() and torch.equal(batch.labels[:, 7:], second)
    assert not set(batch.input_ids.flatten().tolist()) & set(bert_tokenizer.all_special_ids)
    assert torch.equal(copy_task(bert_tokenizer, 5, 7, seed=3).input_ids, batch.input_ids)
    assert not torch.equal(copy_task(bert_tokenizer, 5, 7, seed=4).input_ids, batch.input_ids)
    with_bos = copy_task(100, 2, 4, seed=0, bos_token_id=7)
    assert (with_bos.input_ids[:, 0] == 7).all() and (with_bos.labels[:, :5] == IGNORE_INDEX).all()
    with torch.no_grad():  # our loss (logits of the last L+1 positions only) is transformers' own
        reference = llama(input_ids=batch.input_ids, labels=batch.labels).loss
        torch.testing.assert_close(copy_loss(llama, batch), reference, atol=1e-5, rtol=0)


def test_copy_loss_scores_are_the_loss_fall_of_each_ablation(llama):
    batch = copy_task(5000, 3, 6, seed=0)
    layout = head_layout(llama)
    scores = score_heads(llama, batch, progress=False, metric="copy_loss")
    assert len(scores) == 8 and [s.score for s in scores] == sorted((s.score for s in scores), reverse=True)
    with torch.no_grad(), record_layers(layout) as record:
        clean = float(copy_loss(llama, batch))
    worst = scores[-1]
    with torch.no_grad(), mean_ablated(layout, worst.layer, worst.head, record.means[worst.layer]):
        assert clean - float(copy_loss(llama, batch)) == pytest.approx(worst.score, abs=1e-5)
    assert all(not p._forward_pre_hooks for p in layout.projections)


def test_learning_lowers_the_copy_loss_with_the_lm_frozen(llama):
    batch = copy_task(5000, 4, 8, seed=0)
    llama.lm_head.weight.requires_grad_(True)  # flags the caller set must come back as they were
    before = copy_scores(llama, batch)[0]
    values = learn_coefficients(llama, batch, [(0, 0), (1, 1), (1, 3)], steps=10, lr=0.1)
    with scaled_heads(head_layout(llama), values):
        after = copy_scores(llama, batch)[0]
    assert after < before - 1e-3
    assert all(v != 1.0 for v in values.values())
    assert llama.lm_head.weight.requires_grad and llama.lm_head.weight.grad is None  # the LM got no gradient
    assert not llama.training


def test_run_pear_saves_reuses_and_rebuilds_a_damaged_artifact(bert_tokenizer, llama, tmp_path, monkeypatch, caplog):
    calls = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return score_heads(*args, **kwargs)

    monkeypatch.setattr(pear_module, "score_heads", counted)
    lm = LanguageModel.from_objects(llama, bert_tokenizer, name="tiny-llama")
    first = run_pear(lm, SETTINGS, cache_dir=tmp_path, progress=False)
    assert first.directory is not None and (first.directory / MANIFEST_FILE).exists() and not first.reused
    record = json.loads((first.directory / COEFFICIENTS_FILE).read_text())
    assert record["settings"]["n_heads"] == 3 and len(record["head_scores"]) == 8
    assert record["settings"]["head_metric"] == "final_logit" and record["settings"]["score_lengths"] == [
        10,
        15,
        25,
        50,
    ]
    assert all(h["score"] > 0 for h in first.heads) and 1 <= len(first.heads) <= 3

    again = run_pear(lm, SETTINGS, cache_dir=tmp_path, progress=False)
    assert again.reused and len(calls) == 1 and again.coefficients == first.coefficients

    path = first.directory / COEFFICIENTS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        rebuilt = run_pear(lm, SETTINGS, cache_dir=tmp_path, progress=False)
    assert len(calls) == 2 and not rebuilt.reused and "damaged" in caplog.text
    assert rebuilt.coefficients == first.coefficients  # deterministic: the same coefficients again
    assert pear_key(lm, dataclasses.replace(SETTINGS, n_heads=2)) != first.key == pear_key(lm, SETTINGS)


def test_apply_pear_folds_what_the_hooks_apply(bert_tokenizer, llama):
    result = run_pear((llama, bert_tokenizer), SETTINGS, progress=False)
    ids = _inputs()
    with scaled_heads(head_layout(llama), result.coefficients):
        hooked = _logits(llama, ids)
    apply_pear(llama, result)
    torch.testing.assert_close(_logits(llama, ids), hooked, atol=1e-5, rtol=0)


def test_an_encoder_decoder_model_is_refused_by_name(bert_tokenizer, build_tiny_t5):
    with pytest.raises(ValueError, match=r"^T5ForConditionalGeneration \(model_type='t5'\) is an encoder-decoder"):
        head_layout(build_tiny_t5(bert_tokenizer))


def test_hooks_are_removed_even_when_the_body_raises(llama):
    layout = head_layout(llama)
    with pytest.raises(RuntimeError), edit_head_inputs(layout, {0: lambda x: x}):
        raise RuntimeError
    assert not layout.projections[0]._forward_pre_hooks


def test_pear_config_runs_end_to_end(compose_cfg, tiny_lm_dir):
    overrides = ["lm=hf", f"lm.path={tiny_lm_dir}", "n_heads=2", "sequences=3", "length=6", "steps=3", "progress=false"]
    overrides += ["score_sequences=8"]
    cfg = compose_cfg("pear", overrides)
    metrics, objects = pear_task(cfg)
    assert metrics["pear/heads"] == len(objects["result"].heads) >= 1
    assert 0.0 <= metrics["pear/accuracy_after"] <= 1.0 and metrics["pear/reused"] == 0.0
    written = json.loads((objects["result"].directory / COEFFICIENTS_FILE).read_text())
    scoring = {"head_metric": "final_logit", "score_lengths": [10, 15, 25, 50], "score_sequences": 8}
    learning = {"n_heads": 2, "sequences": 3, "length": 6, "steps": 3, "lr": 0.05, "seed": 0}
    assert written["settings"] == learning | scoring | {"score_paths": "direct"}
    run_info = json.loads((Path(cfg.paths.output_dir) / "run_info.json").read_text())
    assert {"command", "packages", "git"} <= run_info.keys()  # recorded like a training run
    assert pear_task(cfg)[0]["pear/reused"] == 1.0


def test_the_config_defaults_are_the_settings_defaults(compose_cfg):
    """``reader.pear=true`` (PearSettings defaults) and ``ragdistill-pear`` must make the same cached coefficients."""
    cfg = compose_cfg("pear")
    values = {f.name: cfg[f.name] for f in dataclasses.fields(PearSettings)}
    assert PearSettings.from_mapping(values) == PearSettings()


def test_settings_refuse_an_unknown_metric_and_short_lengths():
    with pytest.raises(ValueError, match="head_metric must be one of"):
        PearSettings(head_metric="loss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_lengths must be null or lengths >= 2"):
        PearSettings(score_lengths=(1, 10))
    assert PearSettings(score_lengths=[10, 20]).score_lengths == (10, 20)  # type: ignore[arg-type]
