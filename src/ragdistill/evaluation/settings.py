"""The ``evaluation`` config group's schema: every key, its type and its limits, checked before a run starts.

``conf/evaluation/default.yaml`` names this class as its ``_target_``, so the config checker refuses an
unknown key (``evaluation.kss``) or a value of the wrong type or range (``evaluation.depth=0``) in one line
before any data is loaded, as it does for every other group. The stages read the settings from the config;
what one key means depends on another (a cut-off beyond the search depth, a reader run the evaluation
does not make) is checked by :func:`ragdistill.evaluation.retrieval.check_evaluation_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ragdistill.utils.constraints import PositiveInt, Precision


@dataclass(frozen=True)
class EvaluationSettings:
    """Retrieval evaluation on ``data.eval`` (and ``evaluation.sets``): what is searched, scored and written.

    Attributes:
        ks: Recall cut-offs (each <= ``depth``).
        depth: Passages retrieved per question.
        bm25_baseline: Also evaluate BM25 (``test_bm25/...``).
        fusion: Fuse dense and BM25 rankings: ``rrf`` (reciprocal rank), ``wsum`` (min-max normalised score
            sum) or ``none`` (``test_fusion_<method>/...``).
        save_index: Write the faiss index of the corpus to ``<run dir>/index``.
        precision: Lightning precision of the encoding passes.
        accelerator: Lightning accelerator of the encoding passes.
        encode_max_tokens: Padded tokens per encoding batch (token-budget batches); None = fixed batches.
        encode_batch_size: Most texts per encoding batch.
        encode_quantize: ``int8``: encode with an int8 dynamically quantised copy of the retriever (CPU).
        encode_threads: CPU threads while encoding; None = the process's setting.
        encode_backend: ``torch``, or ``onnx`` / ``openvino``: an export of the retriever run by that engine (CPU).
        encode_export_dir: Where exports are cached by a digest of the retriever's weights; None = not kept.
        reader_top_k: With a reader, how many of a run's best passages it reads.
        reader_runs: With a reader, which runs it reads (metric prefixes: ``test``, ``test_bm25``, ...).
        sets: More evaluation sets, name -> a data config (``+data@evaluation.sets.<name>=<data>``).
    """

    ks: list[PositiveInt] = field(default_factory=lambda: [1, 5, 20, 100])
    depth: PositiveInt = 100
    bm25_baseline: bool = True
    fusion: str | None = "rrf"  # the choices are the fusion module's METHODS, checked with the other settings
    save_index: bool = True
    precision: Precision | None = "bf16-mixed"
    accelerator: str = "auto"
    encode_max_tokens: PositiveInt | None = 16384
    encode_batch_size: PositiveInt = 256
    encode_quantize: str = "none"  # checked by EncodeSettings, which knows the modes
    encode_threads: PositiveInt | None = None
    encode_backend: str = "torch"  # checked by EncodeSettings, which knows the engines
    encode_export_dir: str | None = None
    reader_top_k: PositiveInt = 5
    reader_runs: list[str] = field(default_factory=lambda: ["test"])
    sets: dict[str, Any] = field(default_factory=dict)
