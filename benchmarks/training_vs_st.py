"""Training throughput: our distillation step vs sentence-transformers' trainer with its closest loss.

The same packaged all-MiniLM-L6-v2, the same SQuAD-open training questions and the same candidate groups
(1 + K-1 passages per question, drawn once by our data module and handed to both, batch by batch, in
the same order), the same batch size, AdamW (lr 2e-5, weight decay 0.01, no schedule), gradient-norm
clipping at 1.0 and the same precision. Two pairings:

- ``gold``: ``teacher=gold loss=infonce`` (1 gold positive + K-1 BM25 hard negatives, in-batch negatives,
  τ = 0.05) vs ``MultipleNegativesRankingLoss`` (scale 20) on columns anchor, positive, negative_1, ...
- ``kl``: ``loss=kl`` on LM-likelihood teacher scores of the BM25 top-K (packaged SmolLM2, scored once,
  own-group candidates: ``retriever.in_batch_negatives=false``) vs ``DistillKLDivLoss`` (student
  temperature 0.05, teacher temperature 1) with the same scores as labels.

Ours runs the pipeline's own path: the Hydra config composed as the CLI does, ``BiEncoderModule`` and
``DistillationDataModule`` instantiated from it, ``pytorch_lightning.Trainer`` from ``trainer=cpu`` (no
logger, checkpoint, progress bar or validation). Sentence-transformers runs ``SentenceTransformerTrainer``
with evaluation, saving and logging off. Each run is a fresh process (its own peak RSS); runs alternate
ours, ST, ours, ST, ... and time ``--steps`` optimisation steps after ``--warmup`` steps:

    python benchmarks/training_vs_st.py                              # batch 8, K=4, fp32 and bf16
    python benchmarks/training_vs_st.py --batch-size 16 --k 8 --precisions 32-true

Before training each run computes the loss of the first batch in eval mode (no dropout) from the shared
initial weights, so the two sides can be checked to do the same sum. Writes
``benchmarks/results/training_vs_st.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from teacher_setup import ROOT, Footprint, footprint, load_lm, publish, run_child, squad_slice

from ragdistill.data.schemas import RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.runtime.determinism import skip_nan_fill
from ragdistill.teachers.gold import GoldTeacher
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher
from ragdistill.utils.quiet import quiet_third_party

PAIRINGS = {"gold": "infonce", "kl": "kl"}
"""Pairing → our loss config; the ST loss is ``MultipleNegativesRankingLoss`` / ``DistillKLDivLoss``."""
TAU_STUDENT = 0.05  # our infonce.temperature and kl.tau_student; ST's MNRL scale is 1/τ
LR, WEIGHT_DECAY, CLIP = 2e-5, 0.01, 1.0  # conf/retriever/minilm.yaml optimizer, conf/trainer/cpu.yaml


@dataclass
class StepClock:
    """Wall-clock time between the end of step ``warmup`` and the end of step ``warmup + steps``."""

    warmup: int
    steps: int
    start: float = 0.0
    end: float = 0.0

    def tick(self, done: int) -> None:
        """Call after each optimisation step with the number of steps done so far."""
        if done == self.warmup:
            self.start = time.perf_counter()
        elif done == self.warmup + self.steps:
            self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Time of the timed steps; fails loudly if training stopped before the last one."""
        if not self.end:
            raise RuntimeError(f"training stopped before step {self.warmup + self.steps}")
        return self.end - self.start


# -- the work both sides share ------------------------------------------------------------------------
def prepare_workload(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Pick (and for KL, score) the questions both sides train on, pickle them with the data; return figures.

    Gold: questions with at least K-1 hard negatives, so every group is full (sentence-transformers needs
    equal columns). KL: the packaged SmolLM2's log p(answer | passage, question) of the BM25 top-K, bf16,
    scored only when the KL pairing is asked for.
    """
    needed = args.batch_size * (args.warmup + args.steps)
    data, candidates = squad_slice(2 * needed, k=30)
    gold = GoldTeacher(num_candidates=20).score(data.train, candidates, data)
    signals = {"gold": [s for s in gold if len(s.candidate_ids) - len(s.positive_ids) >= args.k - 1][:needed]}
    prepared: dict[str, Any] = {"questions": needed}
    if "kl" in args.pairings:
        teacher = LMLikelihoodTeacher(load_lm(), num_candidates=args.k, precision="bf16-mixed")
        scored = teacher.score(data.train[: needed + args.batch_size], candidates, data)
        full = [s for s in scored if len(s.scores) == args.k and bool((s.scores > float("-inf")).all())]
        signals["kl"] = full[:needed]
        prepared["teacher_passages_per_s"] = teacher.metrics()["runtime/teacher_passages_per_s"]
    short = {name: len(group) for name, group in signals.items() if len(group) < needed}
    if short:
        raise RuntimeError(f"too few questions with full groups of {args.k}: {short}; {needed} needed")
    path.write_bytes(pickle.dumps({"data": data, "signals": signals}))
    return prepared


def compose_ours(args: argparse.Namespace, run_dir: Path) -> Any:
    """The run's Hydra config as the CLI composes it (``trainer=cpu``), with this benchmark's settings."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from ragdistill.cli import CONFIG_PATH

    overrides = [
        "trainer=cpu",
        f"loss={PAIRINGS[args.pairing]}",
        f"datamodule.batch_size={args.batch_size}",
        f"datamodule.group_size={args.k}",
        "datamodule.val_size=0",
        "datamodule.num_workers=0",
        f"retriever.in_batch_negatives={str(args.pairing == 'gold').lower()}",
        "retriever.scheduler=null",
        f"trainer.precision={args.precision}",
        f"+trainer.max_steps={args.warmup + args.steps}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(ROOT / ".cache" / "ragdistill")
    return cfg


def build_datamodule(cfg: Any, signals: list[TeacherSignal], data: RetrievalData) -> Any:
    """Our data module, from the config, as ``pipeline.train`` builds it."""
    from hydra.utils import instantiate

    return instantiate(cfg.datamodule)(signals=signals, data=data)


@contextmanager
def training_block(profile: bool, top: dict[str, Any]) -> Iterator[Footprint]:
    """Measure the training block's footprint; with ``profile``, also fill ``top`` with its busiest torch ops.

    ``top["ops"]`` becomes ``[[name, self CPU seconds, calls], ...]`` for the 12 ops with the most self time.
    """
    with footprint() as used:
        if not profile:
            yield used
            return
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            yield used
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    top["ops"] = [[e.key, e.self_cpu_time_total / 1e6, e.count] for e in events]


# -- our side -----------------------------------------------------------------------------------------
class LightningClock(pl.Callback):
    """Feed a :class:`StepClock` after every Lightning training batch (each is one optimiser step)."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        self.clock.tick(trainer.global_step)


def run_ours(args: argparse.Namespace, work: dict[str, Any], run_dir: Path, nan_fill: bool = False) -> dict[str, Any]:
    """Fit our BiEncoderModule with the pipeline's trainer for warm-up + timed steps; return loss₀ and the clock.

    As the pipeline does, the deterministic algorithms ``trainer=cpu`` asks for stay on without torch's NaN
    fill of every new uninitialised tensor (:func:`~ragdistill.runtime.determinism.skip_nan_fill`).
    ``nan_fill=True`` keeps that fill: how our step ran before (the profile's ``aten::fill_``).
    """
    from hydra.utils import instantiate

    cfg = compose_ours(args, run_dir)
    pl.seed_everything(cfg.seed)
    retriever = instantiate(cfg.retriever, loss=instantiate(cfg.loss))
    datamodule = build_datamodule(cfg, work["signals"][args.pairing], work["data"])
    retriever.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() outside a Trainer: nothing to log to, as intended here
        loss0 = float(retriever.training_step(next(iter(datamodule.train_dataloader())), 0))
    retriever.train()
    clock = StepClock(args.warmup, args.steps)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[LightningClock(clock)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    if nan_fill:
        torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    else:
        skip_nan_fill()
    top: dict[str, Any] = {}
    with training_block(args.profile, top) as used:
        trainer.fit(retriever, datamodule=datamodule)
    return top | {
        "loss0": loss0,
        "seconds": clock.seconds,
        "rss_before_mb": used.rss_before_mb,
        "peak_mb": used.peak_mb,
    }


# -- sentence-transformers' side ----------------------------------------------------------------------
def st_rows(datamodule: Any, pairing: str) -> list[dict[str, Any]]:
    """Our data module's batches as sentence-transformers rows, in order: anchor, positive, negative_1, ...

    The first passage of a gold group is its positive (``select_group`` puts it first); a KL group's
    teacher scores become the ``label`` column ``DistillKLDivLoss`` reads.
    """
    rows = []
    for batch in datamodule.train_dataloader():
        group = batch["teacher_scores"].shape[1]
        for b, query in enumerate(batch["queries"]):
            passages = batch["passages"][b * group : (b + 1) * group]
            row = {"anchor": query, "positive": passages[0]}
            row |= {f"negative_{i}": text for i, text in enumerate(passages[1:], start=1)}
            if pairing == "kl":
                row["label"] = batch["teacher_scores"][b].tolist()
            rows.append(row)
    return rows


def in_order(dataset: Any, batch_size: int, drop_last: bool, **_: Any) -> Any:
    """Sentence-transformers batch sampler over the rows in their given order (our data module's batches)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import SequentialSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)


def run_st(args: argparse.Namespace, work: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train with ``SentenceTransformerTrainer`` on the same batches; return loss₀ and the clock."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss, MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from ragdistill.models.locate import resolve_model_path

    class HFClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.tick(state.global_step)

    cfg = compose_ours(args, run_dir)  # only for the data module: the same groups, in the same order
    pl.seed_everything(cfg.seed)
    rows = st_rows(build_datamodule(cfg, work["signals"][args.pairing], work["data"]), args.pairing)
    dataset = Dataset.from_list(rows)
    model = SentenceTransformer(resolve_model_path("packaged:all-MiniLM-L6-v2"), device="cpu")
    loss: torch.nn.Module
    if args.pairing == "gold":
        loss = MultipleNegativesRankingLoss(model, scale=1 / TAU_STUDENT)
    else:
        loss = DistillKLDivLoss(model, student_temperature=TAU_STUDENT, teacher_temperature=1.0)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="constant",
        max_grad_norm=CLIP,
        optim="adamw_torch",
        bf16=args.precision == "bf16-mixed",
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_drop_last=True,
        dataloader_num_workers=0,
        batch_sampler=in_order,
        seed=cfg.seed,
    )
    clock = StepClock(args.warmup, args.steps)
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[HFClock()]
    )
    model.eval()
    with torch.no_grad():
        first = trainer.data_collator([dataset[i] for i in range(args.batch_size)])
        first_loss = trainer.compute_loss(model, first)
    assert isinstance(first_loss, torch.Tensor)  # return_outputs=False: the loss alone
    loss0 = float(first_loss)
    if args.pairing == "kl":  # DistillKLDivLoss multiplies by τ_s²; ours does not
        loss0 /= TAU_STUDENT**2
    model.train()
    top: dict[str, Any] = {}
    with training_block(args.profile, top) as used:
        trainer.train()
    return top | {
        "loss0": loss0,
        "seconds": clock.seconds,
        "rss_before_mb": used.rss_before_mb,
        "peak_mb": used.peak_mb,
    }


RUNNERS: dict[str, Callable[[argparse.Namespace, dict[str, Any], Path], dict[str, Any]]] = {
    "ours": run_ours,
    "ours_nan_fill": partial(run_ours, nan_fill=True),
    "st": run_st,
}
SIDE_NAMES = {"ours": "ours (`trainer=cpu`)", "ours_nan_fill": "ours with torch's NaN fill (before)", "st": "ST"}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measured run in this (fresh) process."""
    quiet_third_party()
    work = pickle.loads(Path(args.workload).read_bytes())
    with tempfile.TemporaryDirectory() as run_dir:
        result = RUNNERS[args.child](args, work, Path(run_dir))
    questions = args.batch_size * args.steps
    return result | {
        "questions_per_s": questions / result["seconds"],
        "passages_per_s": questions * args.k / result["seconds"],
    }


# -- the report ---------------------------------------------------------------------------------------
def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def table_row(pairing: str, precision: str, side: str, ours: list[dict[str, Any]], st: list[dict[str, Any]]) -> str:
    """One Markdown row: medians over the repeats, the ratio of medians and each repeat's own ratio."""
    ratios = ", ".join(f"{o['questions_per_s'] / s['questions_per_s']:.2f}" for o, s in zip(ours, st, strict=True))
    speed = median(ours, "questions_per_s") / median(st, "questions_per_s")
    return (
        f"| {pairing} | {precision} | {SIDE_NAMES[side]} | {median(ours, 'questions_per_s'):.2f} | "
        f"{median(st, 'questions_per_s'):.2f} | "
        f"{median(ours, 'passages_per_s'):.1f} / {median(st, 'passages_per_s'):.1f} | **{speed:.2f}×** ({ratios}) | "
        f"{ours[0]['loss0']:.5f} / {st[0]['loss0']:.5f} | "
        f"{median(ours, 'peak_mb'):,.0f} / {median(st, 'peak_mb'):,.0f} | "
        f"{median(ours, 'peak_mb') - median(ours, 'rss_before_mb'):,.0f} / "
        f"{median(st, 'peak_mb') - median(st, 'rss_before_mb'):,.0f} |"
    )


def command(args: argparse.Namespace) -> str:
    return (
        f"python benchmarks/training_vs_st.py --batch-size {args.batch_size} --k {args.k} --steps {args.steps} "
        f"--warmup {args.warmup} --repeats {args.repeats} --pairings {' '.join(args.pairings)} "
        f"--precisions {' '.join(args.precisions)} --sides {' '.join(args.sides)}"
    )


def run_side(args: argparse.Namespace, workload: Path, side: str, pairing: str, precision: str) -> dict[str, Any]:
    """One run of ``side`` in a fresh process (profiled with ``--profile``); its result is printed as it comes."""
    settings = [f"--batch-size={args.batch_size}", f"--k={args.k}", f"--steps={args.steps}", f"--warmup={args.warmup}"]
    which = [f"--child={side}", f"--pairing={pairing}", f"--precision={precision}", f"--workload={workload}"]
    result = run_child(__file__, [*settings, *which, *(["--profile"] if args.profile else [])])
    print(side, pairing, precision, json.dumps(result), flush=True)
    return result


def kl_labels(args: argparse.Namespace, prepared: dict[str, Any]) -> str:
    """The sentence saying where the KL pairing's labels came from (empty without that pairing)."""
    if "kl" not in args.pairings:
        return ""
    return (
        f" The KL labels: SmolLM2 LM likelihood of the BM25 top-{args.k} ({prepared['questions']} questions scored"
        f" once at {prepared['teacher_passages_per_s']:.2f} passages/s, not part of the timing)."
    )


def timing_report(args: argparse.Namespace, workload: Path, prepared: dict[str, Any]) -> str:
    """Alternate the sides ``--repeats`` times per pairing and precision; the whole Markdown report."""
    rows = []
    for pairing in args.pairings:
        for precision in args.precisions:
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in args.sides}
            for _ in range(args.repeats):
                for side in args.sides:
                    runs[side].append(run_side(args, workload, side, pairing, precision))
            ours = [side for side in args.sides if side != "st"]
            rows += [table_row(pairing, precision, side, runs[side], runs["st"]) for side in ours]
    return "\n".join(
        [
            "# Training throughput: ragdistill vs sentence-transformers (all-MiniLM-L6-v2, CPU)",
            "",
            f"Command: `{command(args)}`",
            "",
            f"Settings: {args.batch_size} SQuAD-open training questions per step × K={args.k} passages "
            f"(1 + {args.k - 1}; {args.batch_size * args.k} passages and {args.batch_size} questions encoded "
            f"per step on both sides), query / passage max length 64 / 256, AdamW lr {LR:g} weight decay "
            f"{WEIGHT_DECAY:g}, no schedule, gradient-norm clip {CLIP:g}; {args.steps} timed steps after "
            f"{args.warmup} warm-up steps, each run a fresh process, runs alternating ours / ST × {args.repeats}; "
            f"{torch.get_num_threads()} CPU threads.{kl_labels(args, prepared)}",
            "",
            "| pairing | precision | ours | ours questions/s | ST questions/s | passages/s ours / ST "
            "| ours / ST (each repeat) | loss₀ ours / ST | peak RSS MB ours / ST | training growth MB ours / ST |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "gold: `teacher=gold loss=infonce` (in-batch + hard negatives, τ 0.05) vs `MultipleNegativesRankingLoss`"
            " (scale 20). kl: `loss=kl retriever.in_batch_negatives=false` (τ_s 0.05, τ_t 1) vs `DistillKLDivLoss`"
            " (student_temperature 0.05, teacher_temperature 1; its τ_s² factor divided out of loss₀). loss₀: the"
            " first batch's loss in eval mode from the same initial weights. Throughput figures are medians over"
            " the repeats; the ratio is of the medians. Peak RSS: the process's high-water mark during training"
            " (counter reset just before it); growth: that peak minus the resident memory before training."
            " ours: the pipeline's path, `trainer.deterministic=true` without torch's NaN fill of new tensors"
            " (`ragdistill.runtime.determinism.skip_nan_fill`); ours with NaN fill: the same run with"
            " `torch.utils.deterministic.fill_uninitialized_memory = True`, as our step ran before that fix.",
        ]
    )


def profile_section(args: argparse.Namespace, workload: Path) -> str:
    """One profiled run per side, pairing and precision: the torch ops with the most self CPU time."""
    lines = [
        PROFILE_HEADING,
        "",
        f"Command: `{command(args)} --profile` (torch.profiler, CPU, all {args.warmup + args.steps} steps).",
        "",
    ]
    for pairing in args.pairings:
        for precision in args.precisions:
            ours, st = (run_side(args, workload, side, pairing, precision) for side in (args.sides[0], "st"))
            lines += [
                f"{pairing}, {precision}: {ours['seconds']:.1f} s ours / {st['seconds']:.1f} s ST for the timed steps "
                "(profiled, so slower than above).",
                "",
                "| ours: op | self CPU s | calls | ST: op | self CPU s | calls |",
                "|---|---|---|---|---|---|",
                *(
                    f"| `{a[0]}` | {a[1]:.2f} | {a[2]} | `{b[0]}` | {b[1]:.2f} | {b[2]} |"
                    for a, b in zip(ours["ops"], st["ops"], strict=True)
                ),
                "",
            ]
    return "\n".join(lines)


PROFILE_HEADING = "## Profile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8, help="questions per step")
    parser.add_argument("--k", type=int, default=4, help="passages per question: 1 + K-1 negatives")
    parser.add_argument("--steps", type=int, default=6, help="timed optimisation steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the sides per setting, interleaved")
    parser.add_argument("--pairings", nargs="+", choices=sorted(PAIRINGS), default=["gold", "kl"])
    parser.add_argument("--precisions", nargs="+", choices=["32-true", "bf16-mixed"], default=["32-true", "bf16-mixed"])
    parser.add_argument("--sides", nargs="+", choices=list(RUNNERS), default=list(RUNNERS), help="st must be last")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one profiled run per side instead; replaces the report's profile section",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training_vs_st.md")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--pairing", choices=sorted(PAIRINGS), help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    quiet_third_party()
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.pkl"
        prepared = prepare_workload(args, workload)
        if args.profile:
            timing = args.out.read_text().split("\n" + PROFILE_HEADING)[0].rstrip() if args.out.exists() else ""
            report = f"{timing}\n\n{profile_section(args, workload)}".lstrip()
        else:
            report = timing_report(args, workload, prepared)
    publish(report, args.out)


if __name__ == "__main__":
    main()
