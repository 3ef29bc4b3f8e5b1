"""sentence-transformers' own backends, timed in their own interpreter (``encoding_engines.py`` starts it).

Their ONNX and OpenVINO backends need ``optimum``, whose releases pin transformers 4.x while this project
runs 5.x, so they live in a venv of their own:

    python -m venv st && st/bin/pip install "torch==2.13.0+cpu" "sentence-transformers[onnx,openvino]"

Reads the texts from a JSON file, writes each backend's passage and question vectors and its passage
encoding seconds (after a warm-up batch) to an ``.npz``. The model folder is copied first: the int8 export
writes into the folder it quantises.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

BATCH = 64
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
"""``onnx-int8``: ONNX Runtime's dynamic int8 quantisation with sentence-transformers' ``avx512_vnni``
configuration (the CPU here has VNNI), its documented fastest CPU setting."""


def load(folder: Path, backend: str) -> SentenceTransformer:
    if backend == "onnx-int8":
        model = SentenceTransformer(str(folder), backend="onnx", device="cpu")
        export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(folder))
        return SentenceTransformer(
            str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}
        )
    return SentenceTransformer(str(folder), backend=backend, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("texts", type=Path, help='JSON {"passages": [...], "questions": [...]}')
    parser.add_argument("out", type=Path)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text())
    results: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        shutil.copytree(args.model, folder)
        for backend in args.backends:
            model = load(folder, backend)
            model.encode(texts["passages"][:BATCH], batch_size=BATCH)  # warm-up
            start = time.perf_counter()
            passages = model.encode(texts["passages"], batch_size=BATCH, normalize_embeddings=True)
            results[f"{backend}/seconds"] = np.array(time.perf_counter() - start)
            results[f"{backend}/passages"] = np.asarray(passages, dtype=np.float32)
            results[f"{backend}/questions"] = np.asarray(
                model.encode(texts["questions"], batch_size=BATCH, normalize_embeddings=True), dtype=np.float32
            )
            print(
                f"{backend}: {len(texts['passages']) / float(results[f'{backend}/seconds']):.1f} passages/s", flush=True
            )
    np.savez(args.out, **results)


if __name__ == "__main__":
    main()
