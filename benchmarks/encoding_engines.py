"""Corpus encoding on each engine, side by side in one run: ours on PyTorch, ONNX Runtime and OpenVINO against
sentence-transformers' own backends, same model (packaged all-MiniLM-L6-v2), same SQuAD-open paragraphs.

    python -m venv st && st/bin/pip install "torch==2.13.0+cpu" "sentence-transformers[onnx,openvino]"
    python benchmarks/encoding_engines.py --passages 2000 --st-python st/bin/python

Ours (``encode_texts``, token-budget batches): today's default (PyTorch, bf16 autocast), then
``backend=onnx`` (float32), ``backend=onnx`` with ``quantize=int8`` and ``backend=openvino`` with
``bf16-mixed`` (OpenVINO's bfloat16 hint) and ``32-true``; each export is made before timing (its time is
reported apart: a run pays it once). sentence-transformers' rows run in the ``--st-python`` interpreter
(``benchmarks/st_backends.py``: its optimum needs transformers 4.x): its default (PyTorch float32),
``backend="onnx"``, ``backend="onnx"`` with its dynamic int8 export for VNNI CPUs, and ``backend="openvino"``
(its static int8 OpenVINO export needs a calibration set from the hub: not run offline). Every row is
warmed up, then timed once; the dev questions of each row are searched over its passage vectors for
gold-paragraph R@1/5/20. Target (issue): ≥ 1.2× the fastest sentence-transformers backend at ≤ 0.5 point R@5.

Writes (or replaces) this corpus size's section of ``benchmarks/results/encoding_engines.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from encoding_vs_st import FULL, recall, write_section
from environment import measured_on
from teacher_setup import ROOT
from timing import timed

from ragdistill.data.squad import load_squad_open
from ragdistill.models.locate import resolve_model_path
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import DEFAULT_ENCODING, encode_texts
from ragdistill.utils.quiet import quiet_third_party

RESULTS = ROOT / "benchmarks" / "results" / "encoding_engines.md"
MAX_R5_LOSS = 0.5
TARGET = 1.2

OURS: dict[str, dict[str, object]] = {
    "ours: PyTorch, bf16 autocast (today's default)": {},
    "ours: ONNX Runtime, float32 (`encode_backend=onnx`)": {"backend": "onnx", "precision": "32-true"},
    "ours: ONNX Runtime, int8 (`encode_backend=onnx encode_quantize=int8`)": {
        "backend": "onnx",
        "precision": "32-true",
        "quantize": "int8",
    },
    "ours: OpenVINO, bf16 hint (`encode_backend=openvino`)": {"backend": "openvino"},
    "ours: OpenVINO, float32 (`encode_backend=openvino precision=32-true`)": {
        "backend": "openvino",
        "precision": "32-true",
    },
}
ST_NAMES = {
    "torch": "sentence-transformers: PyTorch float32 (its default)",
    "onnx": 'sentence-transformers: `backend="onnx"`',
    "onnx-int8": 'sentence-transformers: `backend="onnx"`, int8 (`avx512_vnni`)',
    "openvino": 'sentence-transformers: `backend="openvino"`',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=2000, help=f"corpus slice; >= {FULL} = the whole corpus")
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument(
        "--st-python", required=True, help="the interpreter of a venv with sentence-transformers' backends"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_third_party()
    full = args.passages >= FULL
    data = load_squad_open(n_train=0, n_eval=args.questions, corpus_size=None if full else args.passages, seed=42)
    passages, questions = [p.text for p in data.corpus], [q.text for q in data.eval]
    ours = BiEncoderModule().eval()
    rows: list[tuple[str, float, dict[int, float], float | None]] = []  # name, seconds, R@k, export seconds
    with tempfile.TemporaryDirectory() as scratch:
        for name, changes in OURS.items():
            settings = replace(DEFAULT_ENCODING, accelerator="cpu", progress=False, export_dir=scratch, **changes)
            _, export_s = timed(encode_texts, ours, passages[:64], "passage", settings)  # export + warm-up
            vectors, seconds = timed(encode_texts, ours, passages, "passage", settings)
            scores = recall(lambda texts, kind, s=settings: encode_texts(ours, texts, kind, s), vectors, data)
            rows.append((name, seconds, scores, export_s if changes.get("backend") else None))
            print(f"{name}: {len(passages) / seconds:.1f} passages/s, R@5 {scores[5]:.1f}", flush=True)

        texts_file, out_file = Path(scratch) / "texts.json", Path(scratch) / "st.npz"
        texts_file.write_text(json.dumps({"passages": passages, "questions": questions}))
        model = resolve_model_path("packaged:all-MiniLM-L6-v2")
        subprocess.run(
            [args.st_python, str(ROOT / "benchmarks" / "st_backends.py"), str(model), str(texts_file), str(out_file)],
            check=True,
        )
        st = np.load(out_file)
        for backend, name in ST_NAMES.items():
            answers = st[f"{backend}/questions"]
            scores = recall(lambda texts, kind, a=answers: a, st[f"{backend}/passages"], data)
            rows.append((name, float(st[f"{backend}/seconds"]), scores, None))

    header = (
        "# Corpus encoding on each engine: ours against sentence-transformers' backends (same model, same texts)\n\n"
        "Written by `benchmarks/encoding_engines.py`, one section per corpus size.\n\n"
    )
    write_section(args.out, len(passages), render(rows, args, len(passages), len(questions)), header)


def render(
    rows: list[tuple[str, float, dict[int, float], float | None]], args: argparse.Namespace, n: int, q: int
) -> str:
    """The section of this corpus size: one row per engine, the ratio to the fastest ST backend, the verdict."""
    reference = next(r for r in rows if r[0] == ST_NAMES["torch"])[2][5]
    st_rows = [r for r in rows if r[0].startswith("sentence-transformers")]
    fastest_st = min(st_rows, key=lambda r: r[1])
    ok = [r for r in rows if r[0].startswith("ours") and reference - r[2][5] <= MAX_R5_LOSS]
    best = min(ok, key=lambda r: r[1])
    ratio = fastest_st[1] / best[1]
    lines = [
        f"## {n:,} passages",
        "",
        f"Measured {measured_on()}: `python benchmarks/encoding_engines.py --passages {args.passages} "
        "--st-python <venv>/bin/python` "
        f"({n:,} SQuAD-open paragraphs, {q:,} dev questions, every gold paragraph in the corpus; packaged "
        "all-MiniLM-L6-v2; one timed pass after a warm-up).",
        "",
        "| encoder | seconds | passages/s | × fastest ST | R@1 | R@5 | R@20 | ΔR@5 vs ST fp32 "
        "| first call (s): export unless cached, compile, warm-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seconds, scores, export_s in rows:
        lines.append(
            f"| {name} | {seconds:.1f} | {n / seconds:.1f} | {fastest_st[1] / seconds:.2f}× | {scores[1]:.1f} | "
            f"{scores[5]:.1f} | {scores[20]:.1f} | {scores[5] - reference:+.1f} | "
            f"{'' if export_s is None else f'{export_s:.0f}'} |"
        )
    verdict = "met" if ratio >= TARGET else "missed"
    lines += [
        "",
        f"Fastest sentence-transformers backend: {fastest_st[0]}. Fastest of ours within {MAX_R5_LOSS} point "
        f"R@5 of ST fp32: {best[0]}, {ratio:.2f}× the fastest ST backend: target ≥ {TARGET}× **{verdict}**.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
