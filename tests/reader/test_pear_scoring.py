"""PEAR's head metric: the relative change of the final target logit, its sign, and the average over lengths.

A hand-built one-layer LM whose final logits are a known linear map of two heads' outputs gives the exact
scores; a full-pass reference with plain hooks checks the cached passes on a tiny Llama.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import ragdistill.reader.pear as pear_module
import ragdistill.reader.pear_scoring as scoring
from ragdistill.reader.pear import PearSettings, run_pear
from ragdistill.reader.pear_copy import IGNORE_INDEX, CopyBatch, FinalPosition, copy_task
from ragdistill.reader.pear_heads import HeadLayout, head_layout
from ragdistill.reader.pear_scoring import (
    HeadScore,
    final_logit_scores,
    relative_change,
    score_heads,
    select_heads,
)

# head 0 outputs 1 on token 1 and 3 on token 2 (batch mean 2); head 1 outputs 2 on both (mean ablation: no-op)
TABLES = torch.tensor([[0.0, 1, 3, 0, 0, 0], [0.0, 2, 2, 0, 0, 0]])  # [heads, vocab]
# o_proj weight [vocab, heads]: the logits are W · (head outputs); column means 0.5 and 1
WEIGHT = torch.tensor([[0.0, 0], [0, 0], [0, 0], [0, 0], [2, 3], [1, 3]])


class _Attention(nn.Module):
    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.o_proj = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.o_proj.weight.data.copy_(weight)


class _Layer(nn.Module):
    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.self_attn = _Attention(weight)


class ToyLM(nn.Module):
    """One layer, no attention: head ``h`` outputs ``tables[h, token]`` (width 1); the logits are ``o_proj`` of them."""

    def __init__(self, tables: Tensor = TABLES, weight: Tensor = WEIGHT) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_attention_heads=2, hidden_size=2, head_dim=1, model_type="toy")
        self.layers = nn.ModuleList([_Layer(weight)])
        self.register_buffer("tables", tables)

    def forward(self, input_ids: Tensor, **_: Any) -> SimpleNamespace:
        heads = self.tables[:, input_ids].permute(1, 2, 0)  # [N, T, heads]
        return SimpleNamespace(logits=self.layers[0].self_attn.o_proj(heads))  # [N, T, V]; no cache


def _batch(halves: list[list[int]]) -> CopyBatch:
    """``s s`` for each half ``s``: the final position holds ``s[-2]`` and must produce ``s[-1]``."""
    input_ids = torch.tensor([half + half for half in halves])
    labels = input_ids.clone()
    labels[:, : len(halves[0])] = IGNORE_INDEX
    return CopyBatch(input_ids, labels, len(halves[0]))


# Final tokens (1, 2), targets (4, 5). Centred rows: W[4] − mean = (1.5, 2), W[5] − mean = (0.5, 2).
# clean: (1.5·1 + 2·2, 0.5·3 + 2·2) = (5.5, 5.5), mean 5.5; head 0 ablated to 2: (7, 5), mean 6: +0.5 / 5.5
SHORT = _batch([[1, 4], [2, 5]])
SHORT_SCORE = 1 / 11
# Final tokens (1, 2), targets (5, 4): clean (4.5, 8.5), mean 6.5; ablated (5, 7), mean 6: −0.5 / 6.5
LONG = _batch([[3, 1, 5], [3, 2, 4]])
LONG_SCORE = -1 / 13


def _by_head(scores: list[HeadScore]) -> dict[tuple[int, int], float]:
    return {(s.layer, s.head): s.score for s in scores}


def test_a_head_whose_ablation_raises_the_final_target_logit_scores_its_relative_rise():
    scores = score_heads(ToyLM(), SHORT, progress=False)
    # not −1/11 (sign flipped), 0.5 (absolute change), 0.0588 (the logit not centred), a copy-loss change
    assert _by_head(scores) == pytest.approx({(0, 0): SHORT_SCORE, (0, 1): 0.0}, abs=1e-6)
    assert [(s.layer, s.head) for s in scores] == [(0, 0), (0, 1)]  # most suppressing first
    assert [(s.layer, s.head) for s in select_heads(scores, 2)] == [(0, 0)]  # a score of 0 is not suppressing


def test_a_head_whose_ablation_lowers_the_final_target_logit_is_not_suppressing():
    scores = _by_head(score_heads(ToyLM(), LONG, progress=False))
    assert scores == pytest.approx({(0, 0): LONG_SCORE, (0, 1): 0.0}, abs=1e-6)
    assert select_heads(score_heads(ToyLM(), LONG, progress=False), 2) == []


def test_scores_are_averaged_over_the_lengths():
    both = _by_head(score_heads(ToyLM(), [SHORT, LONG], progress=False))
    assert both[(0, 0)] == pytest.approx((SHORT_SCORE + LONG_SCORE) / 2, abs=1e-6)  # 1/143, not a sum or the last


def test_a_negative_clean_logit_keeps_the_sign_of_the_change():
    # W negated: clean −5.5, ablated −6; the ablation lowers the target logit, so the score is −1/11, not +1/11
    scores = _by_head(score_heads(ToyLM(weight=-WEIGHT), SHORT, progress=False))
    assert scores[(0, 0)] == pytest.approx(-SHORT_SCORE, abs=1e-6)
    assert relative_change(-6.0, -5.5) == pytest.approx(-1 / 11)
    assert relative_change(6.0, 5.5) == pytest.approx(1 / 11)
    with pytest.raises(ValueError, match="clean target logit is 0"):
        relative_change(1.0, 0.0)


def test_averaging_over_lengths_is_a_mean_of_the_per_length_scores(monkeypatch, llama, bert_tokenizer):
    seen: list[tuple[int, int]] = []

    def stub(model: nn.Module, batch: CopyBatch, layout: HeadLayout, *_: Any) -> Tensor:
        seen.append((batch.length, batch.input_ids.shape[0]))
        return torch.full((layout.num_layers, layout.num_heads), float(batch.length))

    monkeypatch.setattr(scoring, "length_scores", stub)
    batches = [copy_task(100, 2, length, seed=0) for length in (10, 20, 60)]
    scores = score_heads(llama, batches, progress=False)
    assert len(scores) == 8 and all(s.score == pytest.approx(30.0) for s in scores)

    seen.clear()  # run_pear scores on score_sequences sequences at each of score_lengths
    settings = PearSettings(n_heads=1, sequences=2, length=4, steps=1, score_lengths=(5, 7), score_sequences=3)
    result = run_pear((llama, bert_tokenizer), settings, progress=False)
    assert seen == [(5, 3), (7, 3)] and all(s.score == pytest.approx(6.0) for s in result.scores)
    seen.clear()  # score_lengths=None: the learning sequences, one length
    single = PearSettings(n_heads=1, sequences=2, length=4, steps=1, score_lengths=None)
    run_pear((llama, bert_tokenizer), single, progress=False)
    assert seen == [(4, 2)]


@pytest.fixture
def llama(bert_tokenizer, build_tiny_llama) -> nn.Module:
    return build_tiny_llama(bert_tokenizer).eval()


@torch.no_grad()
def _reference_scores(model: nn.Module, batch: CopyBatch, layout: HeadLayout, direct: bool) -> Tensor:
    """Full passes and plain hooks: the head's final-position output set to its batch mean there."""
    ids, targets = batch.input_ids[:, :-1], batch.input_ids[:, -1]
    clean_inputs: dict[int, Tensor] = {}

    def centred() -> float:
        logits = model(input_ids=ids).logits[:, -1]
        return float((logits.gather(1, targets[:, None])[:, 0] - logits.mean(dim=-1)).mean())

    handles = [
        p.register_forward_pre_hook(lambda _m, args, i=i: clean_inputs.update({i: args[0][:, -1].clone()}))
        for i, p in enumerate(layout.projections)
    ]
    clean = centred()
    for handle in handles:
        handle.remove()
    scores = torch.zeros(layout.num_layers, layout.num_heads)
    for layer in range(layout.num_layers):
        for head in range(layout.num_heads):
            columns = layout.columns(head)

            def edit(_m: nn.Module, args: tuple[Tensor, ...], i: int, c: slice = columns, lay: int = layer) -> Any:
                x = args[0].clone()
                if direct:
                    x[:, -1] = clean_inputs[i]
                if i == lay:
                    x[:, -1, c] = clean_inputs[i][:, c].mean(dim=0)
                return (x,)

            later = range(layer, layout.num_layers) if direct else [layer]
            handles = [layout.projections[i].register_forward_pre_hook(lambda m, a, i=i: edit(m, a, i)) for i in later]
            scores[layer, head] = (centred() - clean) / abs(clean)
            for handle in handles:
                handle.remove()
    return scores


@pytest.mark.parametrize("paths", ["direct", "total"])
def test_cached_final_position_scores_equal_full_pass_hooks(llama, paths):
    batch = copy_task(5000, 4, 6, seed=0, bos_token_id=101)
    layout = head_layout(llama)
    expected = _reference_scores(llama, batch, layout, direct=paths == "direct")
    found = final_logit_scores(llama, batch, layout, paths, lambda *_: None)  # type: ignore[arg-type]
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-6)
    assert all(not p._forward_pre_hooks for p in layout.projections)


def test_direct_paths_freeze_later_heads_only(llama):
    batch = copy_task(5000, 4, 6, seed=0)
    direct = _by_head(score_heads(llama, batch, progress=False, paths="direct"))
    total = _by_head(score_heads(llama, batch, progress=False, paths="total"))
    # the last layer's heads have no later heads to freeze; the first layer's reach the logits through them too
    assert all(direct[(1, h)] == pytest.approx(total[(1, h)], rel=1e-5, abs=1e-7) for h in range(4))
    assert any(abs(direct[(0, h)] - total[(0, h)]) > 1e-4 for h in range(4))


def test_the_final_position_cache_gives_full_pass_logits_and_is_restored(llama):
    batch = copy_task(5000, 3, 5, seed=2)
    cached, full = FinalPosition(llama, batch), FinalPosition(llama, batch, use_cache=False)
    assert cached.cache is not None and full.cache is None
    length = cached.cache.get_seq_length()
    with torch.no_grad():
        first, again, reference = cached.logits(), cached.logits(), full.logits()
    assert cached.cache.get_seq_length() == length == batch.input_ids.shape[1] - 2
    torch.testing.assert_close(first, reference, atol=1e-5, rtol=0)
    assert torch.equal(first, again)


def test_unknown_metric_or_paths_are_refused(llama):
    batch = copy_task(5000, 2, 4, seed=0)
    with pytest.raises(ValueError, match=r"unknown PEAR head metric 'loss'; known: \['final_logit', 'copy_loss'\]"):
        score_heads(llama, batch, progress=False, metric="loss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown PEAR score paths 'all'"):
        score_heads(llama, batch, progress=False, paths="all")  # type: ignore[arg-type]
    assert pear_module.PEAR_FORMAT_VERSION == 2  # scores changed meaning: older cached folders miss
