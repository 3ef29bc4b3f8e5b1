"""Encode many texts as a Lightning ``predict`` run, with length bucketing to keep padding low.

Speed switches (:class:`EncodeSettings`), each measured for speed and R@5 in
``benchmarks/results/encoding_vs_st.md``: the precision (bf16 autocast), int8 dynamic quantisation of a
copy of the encoder, the number of CPU threads, and token-budget batches.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
from torch.utils.data import DataLoader, Dataset

from ragdistill.callbacks.lightning_progress import lightning_progress_bar
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.engines import ENCODE_BACKENDS, engine_runner, run_batches
from ragdistill.runtime.precision import resolve_precision, runs_on_cpu
from ragdistill.runtime.predict import run_predict

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")
"""Values of :attr:`EncodeSettings.quantize`."""


@dataclass(frozen=True)
class EncodeSettings:
    """How to run an encoding pass.

    Attributes:
        batch_size: Most texts per forward pass. Under the default token budget it binds only on short texts
            (questions); with ``max_tokens=None`` every batch holds this many, so lower it then (64 was the
            default before the budget).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision; ``bf16-mixed`` runs matmuls in bfloat16 (1.74× the float32
            throughput on SQuAD paragraphs on these CPUs, cosine to float32 vectors >= 0.99997; see
            benchmarks/precision.py); ``32-true`` for exact float32; ``bf16-true`` runs a bfloat16 copy of
            the towers (every op in bfloat16, the trained weights untouched).
        progress: Show a progress bar (off inside training, where Lightning's bar is already live).
        quantize: ``none``, or ``int8``: encode with a copy of the encoder whose linear layers are int8
            (dynamic quantisation, per-channel weights; CPU only). The trained weights are never touched.
            FFN down-projections stay in float: their inputs carry BERT's outlier activations, which one
            int8 scale per tensor cannot hold (quantising them too drops the cosine to float32 vectors
            from 0.99 to 0.98 on MiniLM; Bondarenko et al., arXiv:2109.12948).
        threads: CPU threads (``torch.set_num_threads``) for the encoding pass, restored afterwards;
            ``None`` keeps the process's setting.
        backend: ``torch`` (Lightning ``predict``), or ``onnx`` / ``openvino``: an export of the tower run by
            ONNX Runtime or OpenVINO on the CPU (:mod:`ragdistill.retriever.engines`), with the same batches.
        export_dir: Where exported towers are cached by a digest of their weights (``None``: exported
            again on every call, into a scratch folder).
        max_tokens: Token-budget batches: each batch holds as many token-sorted texts as fit in this many
            padded tokens (longest × count), up to ``batch_size``, so short texts go in large batches and
            long ones in small batches. The default, 64 × 256, is a full batch of the longest passages under
            the old fixed batches of 64, so no batch takes more memory; on 2,000 SQuAD paragraphs it pads 3.5%
            instead of 22% and encodes 1.28× faster at the same R@5 (benchmarks/results/encoding_vs_st.md).
            ``None``: fixed batches of ``batch_size`` texts, sorted by characters.

    Raises:
        ValueError: On a value a setting does not accept, naming the setting.
    """

    batch_size: int = 256
    accelerator: str = "auto"
    precision: str | None = "bf16-mixed"
    progress: bool = True
    quantize: str = "none"
    threads: int | None = None
    max_tokens: int | None = 16384
    backend: str = "torch"
    export_dir: str | None = None

    def __post_init__(self) -> None:
        _check_count("batch_size", self.batch_size)
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"EncodeSettings.quantize must be one of {list(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.backend not in ENCODE_BACKENDS:
            raise ValueError(f"EncodeSettings.backend must be one of {list(ENCODE_BACKENDS)}, got {self.backend!r}")
        if self.backend == "openvino" and self.quantize != "none":
            raise ValueError(
                f"EncodeSettings.quantize must be 'none' with backend 'openvino' (int8 is offered with 'onnx' "
                f"and 'torch'), got {self.quantize!r}"
            )
        if self.threads is not None:
            _check_count("threads", self.threads)
        if self.max_tokens is not None:
            _check_count("max_tokens", self.max_tokens)

    @classmethod
    def from_keys(cls, values: Mapping[str, Any], keys: Mapping[str, str], group: str) -> EncodeSettings:
        """Settings from a config group whose key ``k`` holds the field ``keys[k]``; a key it lacks keeps the default.

        Raises:
            ValueError: Naming ``<group>.<key>`` (not the field) whose value the setting does not accept.
        """
        try:
            return cls(**{field: values[key] for key, field in keys.items() if key in values})
        except ValueError as error:
            message = str(error)
            for key, field in keys.items():
                message = message.replace(f"EncodeSettings.{field} ", f"{group}.{key} ")
            raise ValueError(message) from None


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"EncodeSettings.{name} must be an integer >= 1, got {value!r}")


DEFAULT_ENCODING = EncodeSettings()


class _Batches(Dataset[dict[str, Any]]):
    """One item per forward pass: the batch of rows ``batches[i]`` of ``texts``, ready for ``predict_step``."""

    def __init__(self, texts: list[str], batches: list[list[int]], kind: str) -> None:
        self.texts, self.batches, self.kind = texts, batches, kind

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rows = self.batches[index]
        return {"rows": torch.tensor(rows), "texts": [self.texts[r] for r in rows], "kind": self.kind}


def encode_texts(
    retriever: BiEncoderModule, texts: list[str], kind: str, settings: EncodeSettings = DEFAULT_ENCODING
) -> np.ndarray:
    """Return ``[N, D]`` float32 vectors for ``texts`` in their original order.

    Texts are sorted by length so that each batch pads to similar lengths, then put back in order.

    Args:
        retriever: The bi-encoder (its query or passage tower is used according to ``kind``).
        texts: What to encode.
        kind: ``query`` or ``passage``.
        settings: Batching, accelerator, precision, quantisation and threads.

    Raises:
        ValueError: On an unknown ``kind``, or ``quantize='int8'`` on an accelerator other than the CPU.
    """
    if kind not in ("query", "passage"):
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
    if not texts:
        return np.zeros((0, retriever.embedding_dim), dtype=np.float32)
    settings = replace(settings, precision=resolve_precision(settings.precision, settings.accelerator))
    if settings.backend != "torch":
        return _encode_on_engine(retriever, texts, kind, settings)
    loader = DataLoader(_Batches(texts, plan_batches(retriever, texts, kind, settings), kind), batch_size=None)
    logger.info("Encoding %d %s texts in %d batches (%s)", len(texts), kind, len(loader), settings)
    bar = [lightning_progress_bar()] if settings.progress else []
    with _num_threads(settings.threads), _encoding_copy(retriever, settings) as (model, precision):
        outputs = run_predict(model, loader, settings.accelerator, precision, bar)
    vectors = np.zeros((len(texts), retriever.embedding_dim), dtype=np.float32)
    for rows, batch_vectors in outputs or []:
        vectors[rows.numpy()] = batch_vectors.numpy()
    return vectors


def _encode_on_engine(retriever: BiEncoderModule, texts: list[str], kind: str, settings: EncodeSettings) -> np.ndarray:
    """:func:`encode_texts` on ONNX Runtime or OpenVINO: the same batches and tokens, an exported tower."""
    if not runs_on_cpu(settings.accelerator):
        raise ValueError(
            f"EncodeSettings.backend={settings.backend!r} runs on the CPU only; set accelerator='cpu' "
            f"(got {settings.accelerator!r}) or backend='torch'"
        )
    encoder = retriever.query_encoder if kind == "query" else retriever.passage_encoder
    hparams = retriever.hparams
    runner = engine_runner(
        encoder,
        hparams["pooling"],
        hparams["normalize"],
        settings.backend,
        settings.quantize,
        settings.precision,
        export_dir=Path(settings.export_dir) if settings.export_dir is not None else None,
        threads=settings.threads,
    )
    batches = plan_batches(retriever, texts, kind, settings)
    logger.info("Encoding %d %s texts in %d batches (%s)", len(texts), kind, len(batches), settings)

    def tokenize(batch: list[str]) -> dict[str, Tensor]:
        return dict(retriever.tokenize(batch, kind))

    return run_batches(runner, tokenize, texts, batches, retriever.embedding_dim, settings.progress)


def plan_batches(retriever: BiEncoderModule, texts: list[str], kind: str, settings: EncodeSettings) -> list[list[int]]:
    """Rows of ``texts`` per forward pass, longest texts first.

    Without ``settings.max_tokens`` texts are sorted by characters (no tokenizer pass) and cut into
    ``batch_size`` rows. With it they are sorted by token count (the tokenizer runs once more, ~2% of an
    encoding pass) and a batch grows while it holds fewer than ``batch_size`` rows and
    ``longest × (rows + 1) <= max_tokens``.
    """
    if settings.max_tokens is None:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        return [order[start : start + settings.batch_size] for start in range(0, len(order), settings.batch_size)]
    lengths = token_lengths(retriever, texts, kind)
    batches: list[list[int]] = []
    for row in sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True):
        batch = batches[-1] if batches else []
        # the first row of a batch is its longest (sorted), so the batch pads to lengths[batch[0]]
        if batch and len(batch) < settings.batch_size and lengths[batch[0]] * (len(batch) + 1) <= settings.max_tokens:
            batch.append(row)
        else:
            batches.append([row])
    return batches


def token_lengths(retriever: BiEncoderModule, texts: list[str], kind: str) -> list[int]:
    """Tokens each text takes in ``retriever``'s ``kind`` tower: prefix included, truncated as the tower does."""
    prefix, limit = retriever.hparams[f"{kind}_prefix"], retriever.hparams[f"{kind}_max_length"]
    ids = retriever.tokenizer([prefix + t for t in texts], truncation=True, max_length=limit)["input_ids"]
    return [len(row) for row in ids]


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` CPU threads and restore the previous count, even on an error."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


HALF_TRUE = {"bf16-true": torch.bfloat16, "16-true": torch.float16}
"""Precisions whose Lightning plugin converts the whole module in place: they run on a converted copy."""


_COPIES_MADE_FOR = "_encoding_copies_made_for"
"""Attribute on a retriever whose towers are encoding copies: ``(quantize, dtype)`` they were made for."""


@contextmanager
def _encoding_copy(
    retriever: BiEncoderModule, settings: EncodeSettings
) -> Iterator[tuple[BiEncoderModule, str | None]]:
    """``retriever`` with encoding copies of its towers swapped in for the block, and the Lightning precision.

    Copies are made for ``quantize='int8'`` (int8 towers) and for ``bf16-true``/``16-true`` (towers converted
    to that dtype, run under ``32-true``): left to Lightning, those precisions would convert the trained
    retriever itself, for good. Without either, the retriever itself is yielded.

    The towers are swapped, not the whole module copied: a retriever inside a fit holds its trainer, which
    must not be copied. The trained towers are put back on exit, even on an error; towers shared between
    queries and passages stay shared.
    """
    dtype = HALF_TRUE.get(str(settings.precision))
    made_for = (settings.quantize, dtype)
    inside = getattr(retriever, _COPIES_MADE_FOR, None)
    if inside is not None and inside != made_for:
        raise ValueError(
            f"encoding with quantize={settings.quantize!r}, precision {settings.precision!r} inside "
            f"encoding_copies() made for (quantize, dtype) {inside}: the towers are those copies; "
            "encode with the block's settings, or outside it"
        )
    if settings.quantize == "none" and dtype is None:
        yield retriever, settings.precision
        return
    if settings.quantize != "none" and not runs_on_cpu(settings.accelerator):
        raise ValueError(
            f"EncodeSettings.quantize={settings.quantize!r} runs on the CPU only; "
            f"set accelerator='cpu' (got {settings.accelerator!r})"
        )
    precision = settings.precision if dtype is None else "32-true"
    if inside is not None:  # inside encoding_copies(): its copies are already swapped in
        yield retriever, precision
        return
    towers = {"passage_encoder": retriever.passage_encoder, "query_encoder": retriever.query_encoder}
    unique = {id(tower): tower for tower in towers.values()}  # shared towers: one copy, made once
    copies = {key: _tower_copy(tower, settings.quantize, dtype) for key, tower in unique.items()}
    try:
        for name, tower in towers.items():
            setattr(retriever, name, copies[id(tower)])
        setattr(retriever, _COPIES_MADE_FOR, made_for)
        yield retriever, precision
    finally:
        for name, tower in towers.items():
            setattr(retriever, name, tower)
        retriever.__dict__.pop(_COPIES_MADE_FOR, None)


@contextmanager
def encoding_copies(retriever: BiEncoderModule, settings: EncodeSettings) -> Iterator[None]:
    """Make the encoding copies of the towers once for every :func:`encode_texts` call inside the block.

    Each call otherwise copies (and with ``quantize='int8'`` quantises) the towers itself: 0.7 to 3.5 s for
    MiniLM on 2 cores, which an evaluation paid three times (corpus, test and validation questions). Only
    calls with the same quantisation and precision share the copies; the retriever must not train inside
    the block (its trained towers are swapped out). Nothing is copied when ``settings`` needs no copy.
    """
    settings = replace(settings, precision=resolve_precision(settings.precision, settings.accelerator))
    with _encoding_copy(retriever, settings):
        yield


def _tower_copy(tower: nn.Module, quantize: str, dtype: torch.dtype | None) -> nn.Module:
    """A copy of ``tower`` for encoding: int8 when asked, its float weights in ``dtype`` when given."""
    copied = quantize_int8(tower) if quantize == "int8" else copy.deepcopy(tower).eval()
    return copied if dtype is None else copied.to(dtype)


def quantize_int8(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` in eval mode with int8 dynamically quantised linear layers (CPU).

    Weights are quantised per output channel once; activations per tensor at every call. Layers with more
    inputs than outputs (the FFN down-projections of a transformer) stay in float: see
    :attr:`EncodeSettings.quantize`. Under bf16 autocast the float layers run in bfloat16 and the int8 ones
    get float32 inputs (their kernels take nothing else).
    """
    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear) and module.in_features <= module.out_features
    }
    with warnings.catch_warnings():  # torch says eager quantisation moves to torchao; it still works here
        warnings.filterwarnings("ignore", message=r"(?s).*(torchao|quantized tensor creation functions)")
        quantized = quantize_dynamic(copy.deepcopy(encoder).eval(), spec, inplace=True)
    for parent in list(quantized.modules()):
        for name, child in parent.named_children():
            if isinstance(child, DynamicInt8Linear):
                setattr(parent, name, _Float32Input(child))
    return quantized


class _Float32Input(nn.Module):
    """Feed an int8 layer float32 inputs (its kernels take nothing else) and give back the input's dtype.

    Under bf16 autocast or in a bf16 copy, the layer before hands it bfloat16, and the layer after expects it.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        """``inner(x)`` computed on float32 ``x`` outside autocast, in ``x``'s dtype."""
        with torch.autocast(device_type="cpu", enabled=False):
            return self.inner(x.float()).to(x.dtype)
