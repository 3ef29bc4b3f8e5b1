"""Encoding on ONNX Runtime and OpenVINO: the PyTorch path's vectors, an export made once, clear refusals."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.retriever.engines import export_digest
from sample_texts import TEXTS


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir):
    return BiEncoderModule(path=str(tiny_encoder_dir)).eval()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """An export folder the tests share: each tower is exported once for the module (~3 s per export)."""
    return tmp_path_factory.mktemp("shared")


def settings(folder, **changes):
    base = {"accelerator": "cpu", "precision": "32-true", "progress": False, "export_dir": str(folder / "exports")}
    return EncodeSettings(**(base | changes))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("kind", ["passage", "query"])
def test_an_engine_gives_the_pytorch_vectors(encoder, shared, backend, kind):
    reference = encode_texts(encoder, TEXTS, kind, settings(shared))
    vectors = encode_texts(encoder, TEXTS, kind, settings(shared, backend=backend, max_tokens=None, batch_size=4))
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=1e-4)  # same batches' padding, same rows, same order


def test_int8_on_onnx_runtime_stays_close_and_really_runs(encoder, shared):
    reference = encode_texts(encoder, TEXTS, "passage", settings(shared))
    vectors = encode_texts(encoder, TEXTS, "passage", settings(shared, backend="onnx", quantize="int8"))
    assert cosines(vectors, reference).min() > 0.99
    assert not np.allclose(vectors, reference, atol=1e-6)
    assert (next((shared / "exports").iterdir()) / "model.int8.onnx").is_file()


def test_the_export_is_made_once_and_a_broken_one_is_made_again(encoder, tmp_path, caplog):
    from ragdistill.retriever.engines import _loaded

    before = _loaded.cache_info()
    first = encode_texts(encoder, TEXTS, "passage", settings(tmp_path, backend="onnx"))
    (folder,) = (tmp_path / "exports").iterdir()
    assert folder.name == export_digest(encoder.passage_encoder, "mean", True)
    model = folder / "model.onnx"
    stamp = model.stat().st_mtime_ns
    encode_texts(encoder, TEXTS, "query", settings(tmp_path, backend="onnx"))  # shared towers: the same export
    assert model.stat().st_mtime_ns == stamp and len(list((tmp_path / "exports").iterdir())) == 1
    after = _loaded.cache_info()  # the graph is loaded once for both calls, not once per call
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)

    model.write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING):
        again = encode_texts(encoder, TEXTS, "passage", settings(tmp_path, backend="onnx"))
    assert any("unusable" in r.getMessage() and "exporting it again" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again, first)


def test_changed_weights_are_exported_again(tiny_encoder_dir, tmp_path):
    import torch

    encoder = BiEncoderModule(path=str(tiny_encoder_dir)).eval()
    before = export_digest(encoder.passage_encoder, "mean", True)
    with torch.no_grad():
        next(encoder.passage_encoder.parameters()).add_(0.01)
    assert export_digest(encoder.passage_encoder, "mean", True) != before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "tensorrt"}, r"backend must be one of \['torch', 'onnx', 'openvino'\], got 'tensorrt'"),
        (
            {"backend": "openvino", "quantize": "int8"},
            r"quantize must be 'none' with backend 'openvino' \(int8 .*\), got 'int8'",
        ),
    ],
)
def test_bad_engine_settings_are_refused_by_name(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, **changes)


def test_an_engine_refuses_a_gpu(encoder, tmp_path):
    with pytest.raises(ValueError, match=r"backend='onnx' runs on the CPU only"):
        encode_texts(encoder, TEXTS, "passage", settings(tmp_path, backend="onnx", accelerator="gpu"))
