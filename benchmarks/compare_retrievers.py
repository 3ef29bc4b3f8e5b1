"""Are two retrievers' differences real? Paired significance tests over the same evaluation questions.

Re-runs each finished run's evaluation search from what it left on disk (its faiss index of the corpus and
its exported retriever, or for an evaluation-only run the retriever its config names), checks that the
figures match its metrics.json, and compares them with ranx (paired two-sided t-test by default, or
Fisher's randomization test), the first run being the baseline. Runs that wrote TREC run files (every run
now does) are compared without re-encoding by ``ragdistill-report RUN... --significance``, which uses the
same test; this script is for runs made before run files existed.

    python benchmarks/compare_retrievers.py outputs/bench_squad_open/untrained outputs/<date>/<time>_replug_lsr \
        --out benchmarks/results/significance.md
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf
from ranx import Qrels, Run, compare, evaluate

from ragdistill.data.ranking import as_run
from ragdistill.data.schemas import RetrievalData
from ragdistill.evaluation.metrics import gold_qrels
from ragdistill.evaluation.retrieval import encode_settings
from ragdistill.index.faiss_index import CorruptIndexError, FaissIndex
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.search import build_index, search
from ragdistill.utils.quiet import quiet_third_party

logger = logging.getLogger(__name__)

METRICS = ["recall@1", "recall@5", "recall@20", "mrr@10"]


def rerun(run_dir: Path, depth: int = 100) -> tuple[str, RetrievalData, dict[str, dict[str, float]]]:
    """The run's name, data and evaluation ranking (recomputed from its index and retriever).

    Raises:
        SystemExit: If the recomputed gold R@5 is not the one in the run's metrics.json.
    """
    cfg = OmegaConf.load(run_dir / "resolved_config.yaml")
    data: RetrievalData = instantiate(cfg.data)
    exported = run_dir / "retriever"
    retriever = BiEncoderModule(path=str(exported) if exported.is_dir() else cfg.retriever.path).eval()
    settings = encode_settings(cfg.evaluation)  # the run's own batching: bf16 results depend on the batch
    try:
        index = FaissIndex.load(run_dir / "index")
    except CorruptIndexError as err:  # truncated, corrupted or half-written: rebuild it from the run's retriever
        logger.warning("Rebuilding the faiss index from the run's retriever and corpus: %s", err)
        index = build_index(retriever, data.corpus, instantiate(cfg.index), settings)
        index.save(run_dir / "index")
    ranking = as_run(search(retriever, index, data.eval, depth, settings))
    recorded = json.loads((run_dir / "metrics.json").read_text())
    again = float(evaluate(Qrels(gold_qrels(data.eval)), Run(ranking), "recall@5"))  # type: ignore[arg-type]
    if abs(again - recorded["test/gold/recall@5"]) > 1e-3:  # a changed index, retriever or data set
        raise SystemExit(f"{run_dir}: recomputed R@5 {again:.4f} != metrics.json {recorded['test/gold/recall@5']:.4f}")
    return str(cfg.name), data, ranking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run dirs; the first is the baseline")
    parser.add_argument("--test", default="student", choices=["student", "fisher"], help="paired test")
    parser.add_argument("--out", type=Path, help="also write the table (with the command) to this Markdown file")
    args = parser.parse_args()
    quiet_third_party()
    runs, questions = [], None
    for run_dir in args.runs:
        name, data, ranking = rerun(run_dir)
        ids = [q.id for q in data.eval]
        if questions is None:
            questions, qrels = ids, Qrels(gold_qrels(data.eval))
        elif ids != questions:
            raise SystemExit(f"{run_dir} was evaluated on other questions than {args.runs[0]}: not a paired comparison")
        run = Run(ranking, name=f"{name} ({run_dir.name})")
        runs.append(run)
    report = compare(qrels, runs=runs, metrics=METRICS, stat_test=args.test, max_p=0.05)
    table = report.to_table()
    print(table)
    if args.out:
        command = "python benchmarks/compare_retrievers.py " + " ".join(str(r) for r in args.runs)
        note = (
            f"Paired {'t-test' if args.test == 'student' else 'randomization test'} over the same "
            f"{len(questions or [])} questions; a superscript letter marks a significant improvement (p < 0.05) "
            "over the run with that letter."
        )
        args.out.write_text(f"# Paired significance\n\n```bash\n{command}\n```\n\n{note}\n\n```\n{table}\n```\n")


if __name__ == "__main__":
    main()
