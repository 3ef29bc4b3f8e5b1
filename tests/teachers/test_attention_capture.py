"""The capturing attention path must equal transformers' eager attention weights, read at the output rows."""

from __future__ import annotations

import pytest
import torch

from ragdistill.data.schemas import Passage
from ragdistill.models.attention_capture import AttentionOptions, attention_modules, capture_attention
from ragdistill.models.lm_forward import output_attention, target_log_probs
from ragdistill.models.lm_inputs import PromptBuilder, PromptTemplate, TokenLimits
from ragdistill.models.lm_predict_module import collate_examples


def _batch(lm, seq2seq=False):
    builder = PromptBuilder(lm.tokenizer, PromptTemplate(), TokenLimits())
    examples = [
        builder.build(
            0, [Passage("a", "the cat sat on the mat"), Passage("b", "dogs bark at night")], "who sat?", "the cat"
        ),
        builder.build(1, [Passage("a", "short"), Passage("b", "x")], "q?", "a much longer answer here"),
    ]
    return collate_examples(examples, lm.tokenizer.pad_token_id, seq2seq)


def _eager(model, **inputs):
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        return model(**inputs, output_attentions=True)
    finally:
        model.set_attn_implementation(previous)


def _rows(weights, batch):  # weights [b, T_q, T_k] -> mean over the output rows [b, T_k]
    rows, row_mask = batch["target_positions"], batch["target_mask"].float()
    picked = weights.gather(1, rows[:, :, None].expand(-1, -1, weights.shape[-1]))
    return (picked * row_mask[:, :, None]).sum(1) / row_mask.sum(1, keepdim=True)


def test_post_softmax_rows_equal_eager_attention(tiny_llama):
    batch = _batch(tiny_llama)
    ours = output_attention(tiny_llama.model, batch, AttentionOptions(value_norm=False), first_token_only=False)
    out = _eager(tiny_llama.model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    reference = _rows(torch.stack(out.attentions).mean(0).mean(1), batch)  # mean over layers, heads
    assert ours.shape == batch["input_ids"].shape
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.sum(-1), torch.ones(2), atol=1e-5, rtol=0)  # probabilities over keys


def test_layer_and_head_selection_match_eager_slices(tiny_llama):
    batch = _batch(tiny_llama)
    options = AttentionOptions(value_norm=False, layers=(-1,), heads=(1, 3))
    ours = output_attention(tiny_llama.model, batch, options, first_token_only=True)
    out = _eager(tiny_llama.model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    last = out.attentions[-1][:, [1, 3]].mean(1)  # [b, T, T]
    first = batch["target_positions"][:, 0]
    torch.testing.assert_close(ours, last[torch.arange(2), first], atol=1e-6, rtol=1e-5)


def test_value_norm_weights_probabilities_by_value_norms(tiny_llama):
    model = tiny_llama.model
    batch = _batch(tiny_llama)
    values = []
    hooks = [m.v_proj.register_forward_hook(lambda _m, _i, out: values.append(out)) for m in attention_modules(model)]
    try:
        weighted = output_attention(model, batch, AttentionOptions(value_norm=True), first_token_only=False)
    finally:
        for hook in hooks:
            hook.remove()
    out = _eager(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    per_layer = []
    for probs, value in zip(out.attentions, values, strict=True):  # probs [b, H, T, T], value [b, T, Hkv·d]
        norms = value.view(*value.shape[:2], 2, -1).norm(dim=-1).repeat_interleave(2, dim=-1)  # [b, T, H]
        per_layer.append((probs * norms.transpose(1, 2)[:, :, None, :]).mean(1))
    torch.testing.assert_close(weighted, _rows(torch.stack(per_layer).mean(0), batch), atol=1e-6, rtol=1e-5)


def test_pre_softmax_scores_are_log_probabilities_up_to_a_row_constant(tiny_llama):
    batch = _batch(tiny_llama)
    options = AttentionOptions(pre_softmax=True, value_norm=False, layers=(0,), heads=(0,))
    scores = output_attention(tiny_llama.model, batch, options, first_token_only=True)
    out = _eager(tiny_llama.model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    probs = out.attentions[0][:, 0][torch.arange(2), batch["target_positions"][:, 0]]  # [b, T]
    visible = probs > 0
    for row in range(2):
        difference = (scores[row] - probs[row].log())[visible[row]]
        torch.testing.assert_close(difference, difference[:1].expand_as(difference), atol=1e-4, rtol=0)


def test_seq2seq_cross_attention_equals_eager(tiny_t5):
    batch = _batch(tiny_t5, seq2seq=True)
    ours = output_attention(tiny_t5.model, batch, AttentionOptions(value_norm=False), first_token_only=False)
    labels = batch["target_ids"].masked_fill(~batch["target_mask"], -100)
    out = _eager(tiny_t5.model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    cross = torch.stack(out.cross_attentions).mean(0).mean(1)  # [b, L, T_enc]
    row_mask = batch["target_mask"].float()
    reference = (cross * row_mask[:, :, None]).sum(1) / row_mask.sum(1, keepdim=True)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)


def test_attention_implementation_is_restored_even_on_error(tiny_llama):
    model = tiny_llama.model
    before = model.config._attn_implementation
    rows, mask = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 4)
    with pytest.raises(RuntimeError, match="boom"), capture_attention(model, AttentionOptions(), rows, mask):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before


def test_bad_selections_raise(tiny_llama):
    rows, mask = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool)
    for options, message in ((AttentionOptions(layers=(5,)), "layers"), (AttentionOptions(heads=(9,)), "heads")):
        with pytest.raises(ValueError, match=message), capture_attention(tiny_llama.model, options, rows, mask):
            pass
    with pytest.raises(ValueError, match="pre_softmax"):
        AttentionOptions(pre_softmax=True, value_norm=True)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_target_log_probs_equal_full_logits(request, fixture):
    lm = request.getfixturevalue(fixture)
    seq2seq = fixture == "tiny_t5"
    batch = _batch(lm, seq2seq)
    ours = target_log_probs(lm.model, batch)
    if seq2seq:
        labels = batch["target_ids"].masked_fill(~batch["target_mask"], -100)
        full = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
    else:
        logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        full = logits.gather(1, batch["target_positions"][:, :, None].expand(-1, -1, logits.shape[-1]))
    reference = full.log_softmax(-1).gather(-1, batch["target_ids"][:, :, None])[..., 0] * batch["target_mask"]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert (ours[~batch["target_mask"]] == 0).all()
