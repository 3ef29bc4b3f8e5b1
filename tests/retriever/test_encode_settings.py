"""The encoding speed switches: int8 quantisation, threads, token-budget batches, and their validation."""

import numpy as np
import pytest
import torch

from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts, plan_batches, token_lengths
from ragdistill.runtime import precision as precision_module
from ragdistill.runtime.precision import FORCE_ENV, force_cpu_bf16
from sample_texts import TEXTS


def _fp32(**changes):
    return EncodeSettings(**{"accelerator": "cpu", "precision": "32-true", "progress": False} | changes)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir):
    return BiEncoderModule(path=str(tiny_encoder_dir)).eval()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true"])
def test_int8_vectors_stay_close_to_float32(encoder, precision):
    reference = encode_texts(encoder, TEXTS, "passage", _fp32())
    settings = EncodeSettings(accelerator="cpu", precision=precision, progress=False, quantize="int8")
    quantized = encode_texts(encoder, TEXTS, "passage", settings)
    assert quantized.shape == reference.shape
    assert _cosines(quantized, reference).min() > 0.99
    assert not np.allclose(quantized, reference, atol=1e-6)  # int8 did run: the vectors moved a little


def test_int8_leaves_the_trained_towers_untouched(tiny_encoder_dir):
    encoder = BiEncoderModule(path=str(tiny_encoder_dir)).eval()
    tower = encoder.passage_encoder
    before = {name: value.clone() for name, value in tower.state_dict().items()}
    encode_texts(encoder, TEXTS, "query", _fp32(quantize="int8"))
    assert encoder.passage_encoder is tower and encoder.query_encoder is tower  # shared towers stay shared
    assert all(torch.equal(before[name], value) for name, value in tower.state_dict().items())
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in encoder.modules())


def test_encoding_copies_quantise_once_for_every_call_inside_and_restore_the_towers(tiny_encoder_dir, monkeypatch):
    from ragdistill.retriever import encode as encode_module

    encoder = BiEncoderModule(path=str(tiny_encoder_dir)).eval()
    tower = encoder.passage_encoder
    settings = _fp32(quantize="int8")
    separate = [encode_texts(encoder, TEXTS, kind, settings) for kind in ("passage", "query")]
    calls: list[object] = []
    quantize = encode_module.quantize_int8
    monkeypatch.setattr(encode_module, "quantize_int8", lambda module: calls.append(module) or quantize(module))
    with encode_module.encoding_copies(encoder, settings):
        shared = [encode_texts(encoder, TEXTS, kind, settings) for kind in ("passage", "query", "query")]
        swapped_in = encoder.passage_encoder
        with pytest.raises(ValueError, match="inside encoding_copies"):  # float32 would silently run int8 towers
            encode_texts(encoder, TEXTS, "passage", _fp32())
    assert len(calls) == 1 and calls[0] is tower  # the shared tower, quantised once for three calls
    assert swapped_in is not tower and encoder.passage_encoder is tower and encoder.query_encoder is tower
    np.testing.assert_array_equal(shared[0], separate[0])
    np.testing.assert_array_equal(shared[1], separate[1])
    np.testing.assert_array_equal(shared[2], separate[1])


def test_bf16_true_runs_a_bf16_copy_and_leaves_the_weights_float32(tiny_encoder_dir):
    encoder = BiEncoderModule(path=str(tiny_encoder_dir)).eval()
    reference = encode_texts(encoder, TEXTS, "passage", _fp32())
    with force_cpu_bf16():  # bf16 even where this CPU would emulate it
        vectors = encode_texts(encoder, TEXTS, "passage", _fp32(precision="bf16-true"))
    assert all(p.dtype == torch.float32 for p in encoder.parameters())  # Lightning alone would convert them
    assert vectors.dtype == np.float32 and _cosines(vectors, reference).min() > 0.99
    assert not np.allclose(vectors, reference, atol=1e-6)  # bf16 did run


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bf16_encodes_in_float32_on_a_cpu_that_would_emulate_it(tiny_encoder_dir, monkeypatch, precision):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(FORCE_ENV, raising=False)
    encoder = BiEncoderModule(path=str(tiny_encoder_dir)).eval()
    reference = encode_texts(encoder, TEXTS, "passage", _fp32())
    np.testing.assert_array_equal(encode_texts(encoder, TEXTS, "passage", _fp32(precision=precision)), reference)


def test_int8_quantises_all_but_the_down_projections(encoder):
    from ragdistill.retriever.encode import quantize_int8

    quantized = quantize_int8(encoder.passage_encoder)
    linear = {name: m for name, m in quantized.named_modules() if isinstance(m, torch.nn.Linear)}
    int8 = [name for name, m in quantized.named_modules() if type(m) is torch.ao.nn.quantized.dynamic.Linear]
    assert linear and int8  # tiny BERT: FFN down-projection (64 -> 32) float, everything else int8
    assert all(m.in_features > m.out_features for m in linear.values())


def test_int8_refuses_a_gpu_accelerator(encoder):
    settings = EncodeSettings(accelerator="gpu", progress=False, quantize="int8")
    with pytest.raises(ValueError, match="quantize='int8' runs on the CPU only"):
        encode_texts(encoder, TEXTS, "passage", settings)


def test_threads_apply_during_encoding_and_are_restored(encoder):
    seen: list[int] = []
    hook = encoder.passage_encoder.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        encode_texts(encoder, TEXTS, "passage", _fp32(threads=1))
    finally:
        hook.remove()
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_threads_are_restored_after_an_error(encoder):
    before = torch.get_num_threads()

    def fail(*_):
        raise RuntimeError("boom")

    hook = encoder.passage_encoder.register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            encode_texts(encoder, TEXTS, "passage", _fp32(threads=1))
    finally:
        hook.remove()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_token_budget_batches_match_fixed_batches_in_the_original_order(encoder, kind):
    fixed = encode_texts(encoder, TEXTS, kind, _fp32(batch_size=2))
    budget = encode_texts(encoder, TEXTS, kind, _fp32(max_tokens=40))
    alone = np.stack([encode_texts(encoder, [text], kind, _fp32())[0] for text in TEXTS])
    np.testing.assert_allclose(budget, fixed, atol=1e-5)
    np.testing.assert_allclose(budget, alone, atol=1e-5)  # row i is text i's vector


def test_token_budget_plan_covers_every_row_once_within_budget(encoder):
    lengths = token_lengths(encoder, TEXTS, "passage")
    batches = plan_batches(encoder, TEXTS, "passage", _fp32(max_tokens=40))
    assert sorted(row for batch in batches for row in batch) == list(range(len(TEXTS)))
    padded = [max(lengths[r] for r in batch) * len(batch) for batch in batches]
    assert all(p <= 40 or len(batch) == 1 for p, batch in zip(padded, batches, strict=True))
    assert max(len(batch) for batch in batches) > 1  # short texts share a batch
    longest = [max(lengths[r] for r in batch) for batch in batches]
    assert longest == sorted(longest, reverse=True)


def test_token_budget_batches_still_hold_at_most_batch_size_texts(encoder):
    roomy = plan_batches(encoder, TEXTS, "passage", _fp32(max_tokens=10_000, batch_size=64))
    capped = plan_batches(encoder, TEXTS, "passage", _fp32(max_tokens=10_000, batch_size=3))
    assert [len(batch) for batch in roomy] == [len(TEXTS)]
    assert [len(batch) for batch in capped] == [3, 3, 1]


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"quantize": "int4"}, "quantize"),
        ({"threads": 0}, "threads"),
        ({"threads": True}, "threads"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_values_name_the_setting(changes, setting):
    with pytest.raises(ValueError, match=rf"EncodeSettings\.{setting} must be"):
        EncodeSettings(**changes)


def test_evaluation_config_builds_the_settings_and_rejects_bad_ones(compose_cfg):
    from ragdistill.evaluation.retrieval import check_evaluation_settings, encode_settings

    cfg = compose_cfg("config", ["evaluation.encode_quantize=int8", "evaluation.encode_threads=1"])
    settings = encode_settings(cfg.evaluation)
    assert (settings.quantize, settings.threads, settings.batch_size) == ("int8", 1, cfg.evaluation.encode_batch_size)
    bad = compose_cfg("config", ["evaluation.encode_quantize=int4"])
    with pytest.raises(ValueError, match=r"evaluation\.encode_quantize must be one of \['none', 'int8'\]"):
        check_evaluation_settings(bad.evaluation)
