"""Encode with an exported retriever tower on ONNX Runtime or OpenVINO instead of PyTorch (CPU only).

Users who speed up CPU encoders already run them on these engines (sentence-transformers ships both as
``backend=``). A tower is exported once, with its pooling and normalisation inside the graph, by PyTorch's
ONNX exporter (``torch.onnx.export(dynamo=True)``; the TorchScript exporter bakes transformers' mask code
into constants and returns wrong vectors), and cached under ``export_dir/<digest>/`` by a digest of its
weights, pooling and normalisation, so a second evaluation of the same retriever, or a rerun, reuses it.
``int8`` is ONNX Runtime's dynamic quantisation of that graph (per-channel weights). OpenVINO compiles the
ONNX graph for the CPU; with ``bf16-mixed`` it may run matmuls in bfloat16 where the CPU has the units (its
``INFERENCE_PRECISION_HINT``), with ``32-true`` in float32.

The batches, their order and the tokenisation are the PyTorch path's
(:func:`~ragdistill.retriever.encode.plan_batches`), so vectors differ only by the engine's arithmetic.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ragdistill.models.weights_digest import parameters_digest
from ragdistill.retriever.pooling import pool
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)

ENCODE_BACKENDS = ("torch", "onnx", "openvino")
"""Values of ``EncodeSettings.backend``: PyTorch (Lightning ``predict``), ONNX Runtime, OpenVINO."""

EXPORT_FORMAT = 1
"""Part of every export's digest: bump when the exported graph changes meaning, and old exports miss."""

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(input_ids [B, T] int64, attention_mask [B, T] int64) -> [B, D] float32`` vectors."""


class _PooledTower(nn.Module):
    """A tower with its pooling and normalisation: token ids in, text vectors out (what is exported)."""

    def __init__(self, encoder: nn.Module, mode: str, normalize: bool) -> None:
        super().__init__()
        self.encoder, self.mode, self.normalize = encoder, mode, normalize

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.mode, self.normalize)


def export_digest(encoder: nn.Module, mode: str, normalize: bool) -> str:
    """What names an export: the format, the tower's weights, its pooling and normalisation."""
    return f"v{EXPORT_FORMAT}-{parameters_digest(encoder)}-{mode}-{'norm' if normalize else 'raw'}"


def exported_tower(encoder: nn.Module, mode: str, normalize: bool, export_dir: Path) -> Path:
    """The ONNX file of ``encoder`` with its pooling, exported now unless ``export_dir`` already holds it.

    The export is written to a scratch folder and renamed into place, so a crash leaves no half export; a
    cached folder without its ``model.onnx`` (or one that ONNX cannot load) is reported and exported again.
    """
    folder = export_dir / export_digest(encoder, mode, normalize)
    model = folder / "model.onnx"
    if model.is_file():
        problem = _onnx_problem(model)
        if problem is None:
            return model
        logger.warning("Exported encoder %s is unusable (%s); exporting it again", model, problem)
        shutil.rmtree(folder, ignore_errors=True)
    export_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=export_dir) as scratch:
        _export(_PooledTower(encoder, mode, normalize).eval(), Path(scratch) / "model.onnx")
        try:
            Path(scratch).rename(folder)
        except OSError:  # another process exported the same tower meanwhile: keep theirs
            if not model.is_file():
                raise
        else:
            Path(scratch).mkdir()  # for TemporaryDirectory's own cleanup
    logger.info("Exported the encoder to ONNX in %.1f s: %s", time.perf_counter() - start, model)
    return model


def _require(*modules: str) -> None:
    """Fail in one line naming the install command when an engine's package is missing."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(
                f"encoding on ONNX Runtime or OpenVINO needs {module}: pip install 'ragdistill[engines]'"
            ) from None


def _export(tower: _PooledTower, path: Path) -> None:
    """Export with a dynamic batch and length; the vectors are checked against PyTorch's on a padded batch."""
    _require("onnx", "onnxscript", "onnxruntime")
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0]])  # any vocabulary holds these ids
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with torch.no_grad(), warnings.catch_warnings(), _quiet("torch.onnx", "torch.export"):
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and traced branches
        torch.onnx.export(
            tower,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["vectors"],
            dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        expected = tower(ids, mask).numpy()
    got = onnx_runner(path, threads=None)(ids.numpy(), mask.numpy())
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(
            f"the ONNX export of the encoder gives other vectors (max |Δ| {np.abs(got - expected).max()})"
        )


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the named loggers (``""``: the root) to ERROR for the block: an export's notes are not the user's news."""
    loggers = [logging.getLogger(name or None) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _onnx_problem(path: Path) -> str | None:
    try:
        import onnx

        onnx.checker.check_model(str(path))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def quantized(model: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``model`` (per-channel weights), made once beside it."""
    target = model.with_name("model.int8.onnx")
    if not target.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        scratch = model.with_name(".model.int8.onnx.partial")
        with _quiet(""):  # its advice to pre-process first goes to the root logger
            quantize_dynamic(str(model), str(scratch), per_channel=True, weight_type=QuantType.QInt8)
        scratch.replace(target)
    return target


def onnx_runner(model: Path, threads: int | None) -> Runner:
    """Run ``model`` with ONNX Runtime on the CPU (``threads`` intra-op threads; ``None``: its default)."""
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return np.asarray(session.run(["vectors"], feeds)[0], dtype=np.float32)

    return run


def openvino_runner(model: Path, threads: int | None, bf16: bool) -> Runner:
    """Compile ``model`` with OpenVINO for the CPU, in bfloat16 where the CPU has it (``bf16``) or float32."""
    _require("openvino")
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(model), "CPU", config)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        result = compiled({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.asarray(result[compiled.output(0)], dtype=np.float32)

    return run


def engine_runner(
    encoder: nn.Module,
    mode: str,
    normalize: bool,
    backend: str,
    quantize: str,
    precision: str | None,
    export_dir: Path | None = None,
    threads: int | None = None,
) -> Runner:
    """A runner for ``encoder`` on ``backend``, exporting (and quantising) it first if its export is not cached.

    Args:
        encoder: The tower (a transformers model returning ``last_hidden_state``).
        mode: Its pooling.
        normalize: Whether its vectors are L2-normalised.
        backend: ``onnx`` or ``openvino``.
        quantize: ``none``, or ``int8`` (ONNX Runtime only).
        precision: The run's precision; OpenVINO uses bfloat16 for ``bf16-mixed``.
        export_dir: Where exports are cached (``None``: a scratch folder for this call).
        threads: The engine's CPU threads (``None``: its default).

    Raises:
        ValueError: ``int8`` with OpenVINO (its int8 needs NNCF calibration, not offered here).
    """
    if backend == "openvino" and quantize != "none":
        raise ValueError("EncodeSettings.quantize='int8' is offered with backend='onnx' only (OpenVINO's needs NNCF)")
    load = _loaded if export_dir is not None else _loaded.__wrapped__  # a scratch file is loaded once anyway
    with contextlib.ExitStack() as stack:
        if export_dir is None:  # a scratch export: both engines hold the graph in memory once loaded
            export_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragdistill-export-")))
        model = exported_tower(encoder, mode, normalize, export_dir)
        if quantize == "int8":
            model = quantized(model)
        return load(model, backend, threads, backend == "openvino" and precision == "bf16-mixed")


@functools.lru_cache(maxsize=4)
def _loaded(model: Path, backend: str, threads: int | None, bf16: bool) -> Runner:
    """One runner per exported file and engine setting.

    An evaluation encodes the corpus, the test and the validation questions in three calls; loading the graph
    (and OpenVINO's compile, seconds) once serves them all. The file's name holds the digest of the weights,
    so a retrained tower is another file.
    """
    if backend == "onnx":
        return onnx_runner(model, threads)
    return openvino_runner(model, threads, bf16)


def run_batches(
    runner: Runner,
    tokenize: Callable[[list[str]], dict[str, Tensor]],
    texts: list[str],
    batches: list[list[int]],
    dim: int,
    progress: bool,
) -> np.ndarray:
    """``[N, D]`` vectors of ``texts``, batch by batch in ``batches`` (rows of ``texts``), in the texts' order."""
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    bar = progress_bar()
    bar.disable = not progress
    with bar:
        task = bar.add_task("Encoding", total=len(texts), rate="")
        for rows in batches:
            tokens = tokenize([texts[r] for r in rows])
            vectors[rows] = runner(tokens["input_ids"].numpy(), tokens["attention_mask"].numpy())
            bar.update(task, advance=len(rows))
    return vectors
