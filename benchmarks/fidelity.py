"""Each LM-teacher recipe in its paper's form against the form this project used before, side by side.

For every recipe asked for, trains the retriever twice with the same seed and data (the paper's form, and
the earlier form where it can still be built), evaluates the untrained MiniLM once, and runs paired t-tests
over the same dev questions (each form against the other and against the untrained MiniLM). One JSON file
per recipe lands in ``benchmarks/results/fidelity/``; ``--render`` (also run after measuring) turns all of
them into ``docs/results/fidelity.md``, so recipes measured in different sessions end up in one table.

    python benchmarks/fidelity.py replug_lsr                 # full scale: 1,000 questions, whole corpus
    python benchmarks/fidelity.py replug_lsr intermediate aar aar_label_free atlas_attention g2r_model g2r_data g2r_both
    python benchmarks/fidelity.py --render                   # rebuild the docs page from the JSON files
    python benchmarks/fidelity.py replug_lsr --train-questions 64 --eval-questions 50 --corpus-size 2000  # a look

Runs land in ``outputs/fidelity/<recipe>_{paper,earlier}`` (``--skip-existing`` reuses finished ones); the
teacher-signal cache is shared, so the two forms of a recipe score the teacher once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "fidelity"
PAGE = ROOT / "docs" / "results" / "fidelity.md"
METRICS = ["recall@1", "recall@5", "recall@20", "mrr@10"]
HEADERS = ["R@1", "R@5", "R@20", "MRR@10"]


@dataclass(frozen=True)
class Recipe:
    """A recipe's two forms as command-line overrides; ``earlier`` is None where the old form cannot be built."""

    paper: tuple[str, ...]
    earlier: tuple[str, ...] | None
    what_changed: str


_OLD_AAR = (
    "experiment=aar_label_free",
    "candidates=bm25",
    "teacher.refresh_every_n_steps=15",
    "teacher.drop_answer_negatives=true",
    "datamodule.group_size=4",
    "datamodule.batch_size=32",
)
_OLD_ATTENTION = ("teacher.passage_reduction=sum", "teacher.log_score=true", "loss.tau_teacher=1.0")

RECIPES: dict[str, Recipe] = {
    "replug_lsr": Recipe(
        ("experiment=replug_lsr",),
        ("experiment=replug_lsr", "loss.in_batch_negatives=true"),
        "KL over the K scored candidates (earlier: the student's softmax over the whole batch)",
    ),
    "intermediate": Recipe(
        ("experiment=intermediate",),
        ("experiment=intermediate", "loss.in_batch_negatives=true"),
        "stage-2 KL over the K candidates (earlier: over the whole batch)",
    ),
    "atlas_attention": Recipe(
        ("experiment=atlas_attention",),
        ("experiment=atlas_attention", "loss.in_batch_negatives=true", *_OLD_ATTENTION),
        "mean alpha*||v|| with a softmax at tau 0.01, KL over the K candidates (earlier: log attention mass, "
        "tau 1, KL over the batch)",
    ),
    "aar": Recipe(
        ("experiment=aar",),
        _OLD_AAR,
        "human positives + the LM's top-2 of the base retriever's top-10, its other candidates as negatives "
        "(earlier: no human positives, BM25 pool, re-mined once with an answer-string filter)",
    ),
    "aar_label_free": Recipe(
        ("experiment=aar_label_free",),
        _OLD_AAR,
        "no labels of any kind, base-retriever pool (earlier: BM25 pool, re-mined with an answer-string filter)",
    ),
    "g2r_both": Recipe(
        ("experiment=g2r",),
        None,
        "KD reads only the teacher's scores (earlier: generated units and out-of-pool gold got the row's "
        "best score, which cannot be rebuilt)",
    ),
    "g2r_model": Recipe(
        ("experiment=g2r", "teacher.per_question=0"),
        None,
        "KD over the K candidates only (earlier: the out-of-pool gold got an invented score)",
    ),
    "g2r_data": Recipe(
        ("experiment=g2r", "teacher/source=gold", "loss=multi_positive_infonce"),
        None,
        "unchanged objective (contrastive only); measured for the table",
    ),
}


def run(command: list[str]) -> float:
    """Run a command, streaming its output; return its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def train_or_reuse(command: list[str], run_dir: Path, skip_existing: bool) -> dict[str, float]:
    """The run's metrics.json, running ``command`` into ``run_dir`` unless it finished there already."""
    if not (skip_existing and (run_dir / "metrics.json").exists()):
        run([*command, f"hydra.run.dir={run_dir}"])
    return json.loads((run_dir / "metrics.json").read_text())


def paired_tests(run_dirs: dict[str, Path]) -> dict[str, dict[str, dict[str, float]]]:
    """p-values of ranx's paired t-test for every pair of runs: ``{a: {b: {metric: p}}}``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_retrievers import rerun  # the same re-evaluation (and check) the significance tables use
    from ranx import Qrels, Run, compare

    from ragdistill.evaluation.metrics import gold_qrels

    runs, qrels = [], None
    for label, run_dir in run_dirs.items():
        _, data, ranking = rerun(run_dir)
        qrels = qrels or Qrels(gold_qrels(data.eval))
        runs.append(Run(ranking, name=label))
    report = compare(qrels, runs=runs, metrics=METRICS, stat_test="student", max_p=0.05).to_dict()
    return {label: report[label]["comparisons"] for label in run_dirs}


def measure(name: str, args: argparse.Namespace) -> None:
    """Train both forms of ``name``, test them, write ``benchmarks/results/fidelity/<name>.json``."""
    recipe = RECIPES[name]
    data = [
        f"data.n_train={args.train_questions}",
        f"data.n_eval={args.eval_questions}",
        f"data.corpus_size={args.corpus_size}",
    ]
    untrained_dir = args.out / "untrained"
    commands = {"untrained": [str(BIN / "ragdistill-eval"), "name=untrained", *data[1:]]}
    commands["paper"] = [str(BIN / "ragdistill-train"), *recipe.paper, f"name={name}", *data]
    if recipe.earlier is not None:
        commands["earlier"] = [str(BIN / "ragdistill-train"), *recipe.earlier, f"name={name}_earlier", *data]
    dirs = {form: (untrained_dir if form == "untrained" else args.out / f"{name}_{form}") for form in commands}
    metrics = {form: train_or_reuse(commands[form], dirs[form], args.skip_existing) for form in commands}
    record = {
        "recipe": name,
        "what_changed": recipe.what_changed,
        "commands": {form: " ".join([Path(command[0]).name, *command[1:]]) for form, command in commands.items()},
        "metrics": {form: {m: metrics[form][f"test/gold/{m}"] for m in METRICS} for form in commands},
        "teacher_top1_gold": {form: metrics[form].get("teacher/top1_gold") for form in commands if form != "untrained"},
        "fit_s": {form: metrics[form].get("runtime/fit_s") for form in commands if form != "untrained"},
        "p_values": paired_tests(dirs),
        "questions": args.eval_questions,
        "train_questions": int(metrics["paper"]["train/questions"]),
        "corpus_size": args.corpus_size,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _cell(value: float, p_untrained: float | None, p_other: float | None) -> str:
    marks = ("ᵘ" if p_untrained is not None and p_untrained < 0.05 else "") + (
        "*" if p_other is not None and p_other < 0.05 else ""
    )
    return f"{value:.3f}{marks}"


def verdict(record: dict[str, Any]) -> str:
    """Whether the fix moved the numbers, read from the record's p-values (p < 0.05), in one sentence."""
    p = record["p_values"]

    def significant(form: str, other: str) -> list[str]:
        return [h for m, h in zip(METRICS, HEADERS, strict=True) if p.get(form, {}).get(other, {}).get(m, 1.0) < 0.05]

    metrics = record["metrics"]
    if "earlier" not in metrics:  # no config reproduces the earlier behaviour: only the untrained comparison
        found = significant("paper", "untrained")
        return "No config reproduces the earlier behaviour, so only the paper form was run; " + (
            f"it differs from the untrained MiniLM in {', '.join(found)}."
            if found
            else "it does not differ significantly from the untrained MiniLM."
        )
    direction = {
        h: "up" if metrics["paper"][m] > metrics["earlier"][m] else "down"
        for m, h in zip(METRICS, HEADERS, strict=True)
    }
    forms = significant("paper", "earlier")
    moved = (
        f"The fix moved {', '.join(f'{h} {direction[h]}' for h in forms)} significantly"
        if forms
        else "The fix moved no figure significantly"
    )
    against = [
        f"the {form} form differs from the untrained MiniLM in {', '.join(found)}"
        for form in ("paper", "earlier")
        if (found := significant(form, "untrained"))
    ]
    return (
        f"{moved}; "
        + ("; ".join(against) if against else "neither form differs significantly from the untrained MiniLM")
        + "."
    )


def render() -> str:
    """``docs/results/fidelity.md`` from every JSON file in ``benchmarks/results/fidelity/`` (no runs)."""
    records = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    lines = [
        "# Paper form against the earlier form",
        "",
        "Generated by `python benchmarks/fidelity.py --render` from `benchmarks/results/fidelity/*.json`; each",
        "recipe's runs: `python benchmarks/fidelity.py <recipe>` (commands below). SQuAD-open, gold-paragraph",
        "metrics over the same dev questions, same seed. ᵘ: significantly different from the untrained MiniLM,",
        "*: significantly different from the recipe's other form (paired t-test, p < 0.05). fit s is the wall",
        "time of each run on the machine as it was loaded then: compare it only between runs made side by side.",
        "",
    ]
    if not records:
        return "\n".join([*lines, "No recipe has been measured yet.", ""])
    lines += ["| recipe | form | " + " | ".join(HEADERS) + " | teacher top-1 gold | fit s |", "|---" * 8 + "|"]
    for record in records:
        p = record["p_values"]
        untrained = record["metrics"]["untrained"]
        for form in ("paper", "earlier"):
            if form not in record["metrics"]:
                continue
            other = "earlier" if form == "paper" else "paper"
            cells = [
                _cell(record["metrics"][form][m], p[form]["untrained"][m], p[form].get(other, {}).get(m))
                for m in METRICS
            ]
            top1 = record["teacher_top1_gold"].get(form)
            teacher = "–" if top1 is None else f"{top1:.3f}"
            lines.append(
                f"| {record['recipe']} | {form} | {' | '.join(cells)} | {teacher} | {record['fit_s'][form]:.0f} |"
            )
        cells = [f"{untrained[m]:.3f}" for m in METRICS]
        lines.append(f"| {record['recipe']} | untrained MiniLM | " + " | ".join(cells) + " | – | – |")
    lines += ["", "## What changed, and the commands", ""]
    for record in records:
        corpus = (
            "the whole corpus" if record["corpus_size"] == "null" else f"a {record['corpus_size']}-paragraph corpus"
        )
        scale = (
            f"trained on {record.get('train_questions', '?')} questions, evaluated on {record['questions']} dev "
            f"questions over {corpus}"
        )
        lines += [f"**{record['recipe']}** ({scale}): {record['what_changed']}. {verdict(record)}", "", "```bash"]
        lines += [record["commands"][form] for form in ("untrained", "paper", "earlier") if form in record["commands"]]
        lines += ["```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", help=f"recipes to measure: {', '.join(RECIPES)}")
    parser.add_argument("--render", action="store_true", help="only rebuild docs/results/fidelity.md")
    parser.add_argument("--train-questions", type=int, default=1000)
    parser.add_argument("--eval-questions", type=int, default=1000)
    parser.add_argument("--corpus-size", default="null", help="null = the whole corpus")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "fidelity")
    parser.add_argument("--skip-existing", action="store_true", help="reuse run dirs that already hold metrics.json")
    args = parser.parse_args()
    unknown = [name for name in args.recipes if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")
    if not args.render:
        for name in args.recipes:
            measure(name, args)
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render())
    print(PAGE.read_text())


if __name__ == "__main__":
    main()
