"""The console scripts as a user runs them (real subprocesses, real Hydra)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ragdistill.cli import CONFIG_PATH, RunInputError, run_task
from ragdistill.data.errors import DataValidationError
from ragdistill.utils.errors import ConfigError

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

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


@pytest.mark.parametrize(
    ("override", "named"),
    [("retriever.poling=mean", "poling"), ("retriever=nope", "retriever/nope"), ("+loss=nope", "loss/nope")],
)
def test_bad_override_fails_naming_the_key(tmp_path, override, named):
    """Hydra rejects an unknown key or group option while composing: its message, no traceback, no run dir."""
    done = _run(
        "ragdistill-train", "experiment=fixture_smoke", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert done.returncode != 0 and named in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and not (tmp_path / "run").exists()


def test_a_bad_value_fails_in_one_line_and_keeps_what_was_computed(tmp_path):
    """A value the check rejects: exit 1, one line naming key, value, expectation and run dir; files kept."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    kept = {run_dir / "metrics.json": b'{"test/gold/recall@5": 0.5}', cache / "teacher" / "3f9c" / "00000.npz": b"npz"}
    for path, content in kept.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    done = _run(
        "ragdistill-train",
        "experiment=fixture_smoke",
        "loss.temperature=abc",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache}",
        cwd=tmp_path,
    )

    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "ConfigError" in line]
    assert errors == [
        "ConfigError: loss.temperature='abc' (str) does not fit ragdistill.losses.infonce.InfoNCELoss: "
        f"expected float > 0 (run dir <{run_dir}>)"
    ]
    log = (run_dir / "fixture_smoke.log").read_text()
    assert "loss.temperature='abc'" in log
    assert "Traceback" not in done.stderr + done.stdout + log
    assert {path: path.read_bytes() for path in kept} == kept


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


def _cfg(tmp_path: Path):
    return OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("loss.temperature=0 (int) does not fit InfoNCELoss: expected float > 0"),
        DataValidationError("corpus.jsonl", "duplicate passage id 'p3'", 12),
    ],
)
def test_run_task_turns_input_errors_into_one_line(tmp_path, caplog, error):
    def task(cfg):
        raise error

    with caplog.at_level(logging.ERROR, logger="ragdistill.cli"), pytest.raises(RunInputError) as raised:
        run_task(task, _cfg(tmp_path))

    line = f"{type(error).__name__}: {error} (run dir <{tmp_path}>)"
    assert str(raised.value) == line and raised.value.__cause__ is error
    assert [(r.getMessage(), r.exc_info) for r in caplog.records] == [(line, None)]  # no traceback logged


def test_run_task_keeps_the_traceback_of_an_unexpected_error(tmp_path, caplog):
    def task(cfg):
        raise RuntimeError("CUDA out of memory")

    with caplog.at_level(logging.ERROR, logger="ragdistill.cli"), pytest.raises(RuntimeError, match="CUDA"):
        run_task(task, _cfg(tmp_path))

    assert caplog.records[-1].exc_info is not None and str(tmp_path) in caplog.records[-1].getMessage()


def test_run_task_ends_a_run_stopped_by_sigterm_with_status_143(tmp_path, caplog):
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    def task(cfg):
        raise SIGTERMException()  # what Lightning's fit loop raises: a SystemExit whose status is 0

    with caplog.at_level(logging.ERROR, logger="ragdistill.cli"), pytest.raises(SystemExit) as stopped:
        run_task(task, _cfg(tmp_path))

    assert stopped.value.code == 143
    assert "SIGTERM" in caplog.records[-1].getMessage() and str(tmp_path) in caplog.records[-1].getMessage()


def test_pear_command_writes_its_coefficients_and_reuses_them(tmp_path, tiny_lm_dir):
    settings = ("n_heads=2", "sequences=3", "length=6", "steps=3", "progress=false", f"paths.cache_dir={tmp_path}")
    runs = []
    for name in ("first", "second"):
        run_dir = tmp_path / name
        done = _run(
            "ragdistill-pear", "lm=hf", f"lm.path={tiny_lm_dir}", *settings, f"hydra.run.dir={run_dir}", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads((run_dir / "metrics.json").read_text()))
    assert runs[0]["pear/reused"] == 0.0 and runs[1]["pear/reused"] == 1.0
    assert runs[0]["pear/heads"] >= 1 and list((tmp_path / "pear").glob("*/coefficients.json"))
