"""The same retriever through every data format: convert one data set to each, load each back, evaluate, compare.

For each source (the shipped fixture; SQuAD-open dev at the docs' reduced scale), the data is made
TSV-safe once (tabs and line breaks to spaces, fields trimmed: what the TSV formats can hold; the count is
reported), written by :mod:`ragdistill.data.convert` as JSONL, BEIR, MS MARCO, DPR and Hugging Face tables,
and the MS MARCO files once more as an ``ir_datasets`` id; then the untrained packaged MiniLM is evaluated on
each (``ragdistill-eval`` in this process, BM25 off). Every gold-passage figure must equal the JSONL one:
the script exits 1 naming the first that does not.

    python benchmarks/format_agreement.py                        # both sources, ~10 min on 2 idle cores
    python benchmarks/format_agreement.py --sources fixture      # seconds

Writes ``benchmarks/results/format_agreement.md`` (shown in docs/data_format.md) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ir_datasets
from hydra import compose, initialize_config_dir
from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
from ir_datasets.util import LocalDownload

from ragdistill.data.convert import WRITERS, tsv_safe
from ragdistill.data.fixture import load_fixture
from ragdistill.data.schemas import RetrievalData
from ragdistill.data.squad import load_squad_open
from ragdistill.pipeline import evaluate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SOURCES: dict[str, tuple[str, Callable[[], RetrievalData]]] = {
    "fixture": ("the shipped fixture: 211 passages, 60 eval questions", load_fixture),
    "squad_open_dev": (
        "SQuAD-open dev: 500 questions over 5,000 paragraphs (seed 42)",
        lambda: load_squad_open(n_train=0, n_eval=500, corpus_size=5000, seed=42),
    ),
}
GOLD = ["gold/recall@1", "gold/recall@5", "gold/recall@20", "gold/mrr@10", "gold/ndcg@10"]
HEADERS = ["R@1", "R@5", "R@20", "MRR@10", "nDCG@10"]
TOLERANCE = 1e-9


def register_ir_datasets(dataset_id: str, folder: Path) -> list[str]:
    """Register converter-written MS MARCO files as an ``ir_datasets`` id; return the overrides that load it."""
    if dataset_id not in ir_datasets.registry._registered:
        ir_datasets.registry.register(
            dataset_id,
            ir_datasets.Dataset(
                TsvDocs(LocalDownload(folder / "collection.tsv")),
                TsvQueries(LocalDownload(folder / "queries.dev.tsv")),
                TrecQrels(LocalDownload(folder / "qrels.dev.tsv"), {1: "relevant"}),
            ),
        )
    return ["data=ir_datasets", f"data.id={dataset_id}"]


def evaluate_format(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """``ragdistill-eval`` with ``overrides`` in this process; its metrics."""
    settings = ["evaluation.bm25_baseline=false", "evaluation.fusion=none", "evaluation.save_index=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "eval",
            [*overrides, *settings, "logger=csv", f"hydra.run.dir={run_dir}", f"paths.output_dir={run_dir}"],
            return_hydra_config=True,
        )
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    metrics, _ = evaluate(cfg)
    return metrics


def measure(source: str, work: Path) -> dict[str, Any]:
    """Every format of one source: figures, load time, and how many texts the TSV-safe step changed."""
    data, changed = tsv_safe(SOURCES[source][1]())
    rows: dict[str, dict[str, float]] = {}
    for fmt, writer in WRITERS.items():
        overrides = writer(data, work / source / fmt)
        rows[fmt] = evaluate_format(overrides, work / source / f"{fmt}_run")
        if fmt == "msmarco":
            irds = register_ir_datasets(f"ragdistill-agreement/{source}", work / source / fmt)
            rows["ir_datasets"] = evaluate_format(irds, work / source / "ir_datasets_run")
    return {
        "description": SOURCES[source][0],
        "passages": len(data.corpus),
        "questions": len(data.eval),
        "tsv_changed": changed,
        "formats": rows,
    }


def disagreements(record: dict[str, Any]) -> list[str]:
    """Each gold figure of a format that differs from the JSONL one by more than :data:`TOLERANCE`."""
    reference = record["formats"]["jsonl"]
    return [
        f"{fmt} {key}: {metrics.get(f'test/{key}')} vs jsonl {reference[f'test/{key}']}"
        for fmt, metrics in record["formats"].items()
        for key in GOLD
        if abs(metrics.get(f"test/{key}", float("inf")) - reference[f"test/{key}"]) > TOLERANCE
    ]


def render(records: dict[str, dict[str, Any]]) -> str:
    """The results page: one table per source, each format's figures and its largest gap to JSONL."""
    lines = [
        "# The same retriever through every data format",
        "",
        "Generated by `python benchmarks/format_agreement.py`: each source converted to every format by",
        "`ragdistill.data.convert`, loaded back by its `data=` loader, the untrained packaged MiniLM evaluated on",
        "each (gold-paragraph figures; BEIR and MS MARCO carry no answers). max |Δ| is the largest gap of the",
        f"row's figures to the JSONL row's; the script fails above {TOLERANCE:g}.",
        "",
    ]
    for record in records.values():
        lines += [
            f"**{record['description']}** ({record['tsv_changed']} texts made TSV-safe before writing every format)",
            "",
            "| format | passages | questions | load s | " + " | ".join(HEADERS) + " | answer R@5 | max abs Δ |",
            "|---|---|---|---|" + "---|" * len(HEADERS) + "---|---|",
        ]
        reference = record["formats"]["jsonl"]
        for fmt, metrics in record["formats"].items():
            gap = max(abs(metrics[f"test/{key}"] - reference[f"test/{key}"]) for key in GOLD)
            answer = metrics.get("test/answer/recall@5")
            cells = [f"{metrics[f'test/{key}']:.4f}" for key in GOLD]
            counts = f"{record['passages']} | {int(metrics['test/questions'])} | {metrics['runtime/data_s']:.2f}"
            answer_cell = "–" if answer is None else f"{answer:.4f}"
            lines.append(f"| {fmt} | {counts} | " + " | ".join(cells) + f" | {answer_cell} | {gap:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    parser.add_argument("--work", type=Path, default=None, help="where the converted files go (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results_json = RESULTS / "format_agreement.json"
    records = json.loads(results_json.read_text()) if results_json.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for source in args.sources:
            records[source] = measure(source, work)
    records = {source: records[source] for source in SOURCES if source in records}
    results_json.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    (RESULTS / "format_agreement.md").write_text(render(records))
    problems = [problem for record in records.values() for problem in disagreements(record)]
    for problem in problems:
        print(f"formats disagree: {problem}", file=sys.stderr)
    print(render(records))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
