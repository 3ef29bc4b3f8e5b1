"""Fake run dirs in the layout a real run writes (metrics.json, resolved_config.yaml, .hydra/, run_info.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

GOLD = {"_target_": "ragdistill.teachers.gold.GoldTeacher", "num_candidates": 20, "drop_answer_negatives": True}
LM_LIKELIHOOD = {
    "_target_": "ragdistill.teachers.lm_likelihood.LMLikelihoodTeacher",
    "lm": {"_target_": "ragdistill.models.lm.LanguageModel", "path": "packaged:SmolLM2-135M-Instruct"},
    "target": "answer",
    "num_candidates": 10,
}
INFONCE = {"_target_": "ragdistill.losses.infonce.InfoNCELoss"}
KL = {"_target_": "ragdistill.losses.kl.KLDistillLoss", "tau_student": 0.05, "tau_teacher": 1.0}


def run_config(run_dir: Path, name: str, teacher: dict[str, Any], loss: dict[str, Any], lr: float) -> dict[str, Any]:
    """A resolved config shaped like the real one: shared keys, run-dir paths, and the keys under test."""
    return {
        "name": name,
        "tags": [name, teacher["_target_"].rsplit(".", 1)[-1]],
        "seed": 42,
        "paths": {"root_dir": "/work/main", "output_dir": str(run_dir), "cache_dir": "/work/main/.cache"},
        "data": {"_target_": "ragdistill.data.squad.load_squad_open", "n_train": 600, "n_eval": 500},
        "retriever": {
            "_target_": "ragdistill.retriever.bi_encoder_module.BiEncoderModule",
            "path": "packaged:all-MiniLM-L6-v2",
            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": lr, "weight_decay": 0.01},
        },
        "teacher": teacher,
        "loss": loss,
        "trainer": {"_target_": "pytorch_lightning.Trainer", "max_epochs": 1, "default_root_dir": str(run_dir)},
        "callbacks": {"model_checkpoint": {"dirpath": f"{run_dir}/checkpoints", "filepath": f"{run_dir}/ckpt"}},
        "evaluation": {"ks": [1, 5, 20, 100], "fusion": "rrf"},
    }


def run_metrics(recall: tuple[float, float, float, float], fit_s: float, top1_gold: float | None) -> dict[str, float]:
    """metrics.json figures: the retriever's curve, a BM25 baseline equal in every run, runtimes."""
    metrics = {f"test/gold/recall@{k}": value for k, value in zip((1, 5, 20, 100), recall, strict=True)}
    metrics |= {"test/gold/mrr@10": recall[0] + 0.05, "test/questions": 500.0}
    metrics |= {"test_bm25/gold/recall@1": 0.7, "test_bm25/gold/recall@5": 0.85, "test_bm25/gold/recall@20": 0.92}
    metrics |= {"runtime/fit_s": fit_s, "runtime/teacher_s": 0.6}
    if top1_gold is not None:
        metrics["teacher/top1_gold"] = top1_gold
    return metrics


def write_run(run_dir: Path, config: dict[str, Any], metrics: dict[str, float] | str | None) -> Path:
    """Write a run dir; ``metrics`` as a string is written verbatim (corrupt files), None writes none."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"name={config['name']}"]))
    (run_dir / "resolved_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "run_info.json").write_text(json.dumps({"command": ["ragdistill-train"], "git": {"commit": None}}))
    (run_dir / "csv").mkdir()
    (run_dir / "csv" / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    if isinstance(metrics, str):
        (run_dir / "metrics.json").write_text(metrics)
    elif metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run_dir


@pytest.fixture
def three_runs(tmp_path: Path) -> Path:
    """``outputs/`` with three finished runs: two gold-teacher runs (lr 2e-5, 5e-5) and one LM-likelihood run."""
    outputs = tmp_path / "outputs" / "2026-11-21"
    a, b, c = outputs / "05-00-00_gold_a", outputs / "06-00-00_gold_b", outputs / "07-00-00_replug"
    write_run(a, run_config(a, "gold_a", GOLD, INFONCE, 2e-5), run_metrics((0.61234, 0.8, 0.9, 0.97), 123.456, None))
    write_run(b, run_config(b, "gold_b", GOLD, INFONCE, 5e-5), run_metrics((0.65, 0.82, 0.91, 0.975), 130.0, None))
    write_run(c, run_config(c, "replug", LM_LIKELIHOOD, KL, 2e-5), run_metrics((0.6, 0.84, 0.95, 0.99), 580.2, 0.878))
    return tmp_path / "outputs"


@pytest.fixture
def make_run() -> Callable[..., Path]:
    """``make_run(run_dir, metrics=..., name=..., lr=...)``: one gold-teacher run dir with the given metrics file."""

    def make(run_dir: Path, metrics: dict[str, float] | str | None = "default", name: str = "run", lr: float = 2e-5):
        if metrics == "default":
            metrics = run_metrics((0.6, 0.8, 0.9, 0.95), 100.0, None)
        return write_run(run_dir, run_config(run_dir, name, GOLD, INFONCE, lr), metrics)

    return make


TEACHERS = {"gold": GOLD, "lm_likelihood": LM_LIKELIHOOD}
LOSSES = {"infonce": INFONCE, "kl": KL}


@pytest.fixture
def make_cached_run() -> Callable[..., Path]:
    """``make_cached_run(run_dir, scored, reused, scoring_s, teacher=..., loss=..., lm=..., **teacher_settings)``.

    A training run with the teacher cache's metrics, as ``score_with_cache`` records them. ``teacher`` and
    ``loss`` name a config above (``teacher_settings`` override the teacher's keys), ``lm`` adds a top-level
    ``lm`` node with that path, ``scoring_s=None`` leaves ``runtime/teacher_scoring_s`` out (older runs).
    """

    def make(
        run_dir: Path,
        scored: int,
        reused: int,
        scoring_s: float | None,
        teacher: str = "lm_likelihood",
        loss: str = "kl",
        lm: str | None = None,
        **teacher_settings: Any,
    ) -> Path:
        config = run_config(run_dir, run_dir.name, {**TEACHERS[teacher], **teacher_settings}, LOSSES[loss], 2e-5)
        if lm is not None:
            config["lm"] = {"_target_": "ragdistill.models.lm.LanguageModel", "path": lm, "batch_size": 8}
        metrics = run_metrics((0.6, 0.8, 0.9, 0.95), 100.0, 0.5)
        metrics |= {
            "teacher/cache_shards_total": float(scored + reused),
            "teacher/cache_shards_scored": float(scored),
            "teacher/cache_shards_reused": float(reused),
            "teacher/cache_shards_corrupt": 0.0,
        }
        if scoring_s is not None:
            metrics["runtime/teacher_scoring_s"] = scoring_s
        return write_run(run_dir, config, metrics)

    return make
