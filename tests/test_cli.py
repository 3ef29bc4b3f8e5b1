"""The console scripts as a user runs them (real subprocesses, real Hydra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragdistill.cli import CONFIG_PATH

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600
    )


def test_help_lists_the_config_groups(tmp_path):
    done = _run("ragdistill-train", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for group in ("teacher", "lm", "loss", "retriever", "index", "logger", "experiment"):
        listed = ", ".join(sorted(p.stem for p in (Path(CONFIG_PATH) / group).glob("*.yaml")))
        assert f"{group}: {listed}" in done.stdout, group


def test_cfg_job_prints_the_composed_config(tmp_path):
    done = _run("ragdistill-train", "experiment=quickstart", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "name: quickstart" in done.stdout and "corpus_size: 5000" in done.stdout


def test_bad_override_fails_naming_the_key(tmp_path):
    done = _run("ragdistill-train", "retriever.poling=mean", cwd=tmp_path)
    assert done.returncode != 0 and "poling" in done.stderr


def test_eval_of_the_untrained_backbone_on_the_fixture(tmp_path):
    run_dir = tmp_path / "run"
    done = _run("ragdistill-eval", "data=fixture", "evaluation.fusion=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["test/gold/recall@20"] <= 1 and "test_bm25/gold/recall@5" in metrics
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "recall_at_k.png").exists()


@pytest.mark.slow
def test_quickstart_data_path_on_a_small_squad_open(tmp_path):
    """The default data (packaged SQuAD) through the real CLI, shrunk to seconds."""
    run_dir = tmp_path / "run"
    done = _run(
        "ragdistill-train",
        "experiment=quickstart",
        "data.n_train=48",
        "data.n_eval=40",
        "data.corpus_size=400",
        "datamodule.batch_size=16",
        "datamodule.val_size=8",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/questions"] == 40 and metrics["test/questions"] == 40
    assert (run_dir / "retriever" / "modules.json").exists() and (run_dir / "quickstart.log").exists()
