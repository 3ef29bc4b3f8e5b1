"""The sweep files, the Optuna searches and the launchers: each composes, and tiny multiruns run for real.

Composition tests expand every grid the way Hydra's basic sweeper does and check each point against the
constructors it builds; the SLURM launcher's keys are turned into an sbatch script as submitit does. The multirun
tests start ``ragdistill-train`` as a user does, on the shipped fixture with a 2-layer encoder: one per launcher
(parallel = joblib, submitit_local) and one Optuna search.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ragdistill.cli import CONFIG_PATH, _metric
from ragdistill.config_check import check_config
from ragdistill.report.build import build_report

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

CONF = Path(CONFIG_PATH)
SWEEPS_README = CONF.parent / "docs" / "sweeps.md"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# what each search is written for (its header says so); the default config has loss=infonce
SEARCH_BASE = {"retriever_optuna": [], "kl_optuna": ["experiment=replug_lsr"]}


def parse(params: Any) -> list[Any]:
    """``hydra.sweeper.params`` parsed as Hydra's sweepers parse them."""
    return OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])


def grid(params: Any) -> list[list[str]]:
    """Every job's overrides, as the basic sweeper expands a grid (the cartesian product of the lists)."""
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parse(params)]
    return [list(point) for point in itertools.product(*axes)]


def test_every_sweep_and_search_is_in_the_readme():
    readme = SWEEPS_README.read_text()
    for sweep in options("sweep"):
        assert f"ragdistill-train -m +sweep={sweep}" in readme, sweep
    for search in options("hparams_search"):
        assert f"hparams_search={search}" in readme, search


@pytest.mark.parametrize("sweep", options("sweep"))
def test_every_point_of_every_sweep_composes_and_checks(compose_cfg, sweep):
    cfg = compose_cfg("config", [f"+sweep={sweep}"])
    assert cfg.name == sweep and cfg.hydra.mode == RunMode.MULTIRUN
    points = grid(cfg.hydra.sweeper.params)
    assert len(points) >= 2
    for point in points:
        job = compose_cfg("config", [f"+sweep={sweep}", *point])
        check_config(job)
        for override in OverridesParser.create().parse_overrides(point):  # each swept key took its value
            key, value = override.get_key_element(), override.value()
            choices = job.hydra.runtime.choices
            assert (choices[key] if key in choices else OmegaConf.select(job, key)) == value, (sweep, key)


def test_teacher_x_loss_crosses_every_teacher_with_every_loss(compose_cfg):
    points = grid(compose_cfg("config", ["+sweep=teacher_x_loss"]).hydra.sweeper.params)
    assert len(points) == 12 and len({tuple(p) for p in points}) == 12
    assert points[0][0] == points[3][0] == "teacher=gold"  # the teacher varies slowest: its cache fills once


@pytest.mark.parametrize("search", options("hparams_search"))
def test_optuna_search_is_seeded_in_memory_and_every_param_fits(compose_cfg, search):
    base = [*SEARCH_BASE.get(search, []), f"hparams_search={search}"]
    cfg = compose_cfg("config", base)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode == RunMode.MULTIRUN
    assert sweeper.storage is None and sweeper.sampler.seed is not None and sweeper.direction == "maximize"
    assert cfg.optimized_metric
    ends: list[list[str]] = [[], []]
    for override in parse(sweeper.params):
        key, sweep = override.get_key_element(), override.value()
        absent = object()  # a key may exist with the value null (datamodule.group_size: what the loss needs)
        assert OmegaConf.select(cfg, key, default=absent) is not absent, (
            f"{search}: {key} is not in the composed config"
        )
        if isinstance(sweep, IntervalSweep):
            assert sweep.start < sweep.end and ("log" not in sweep.tags or sweep.start > 0), key
            lows_highs = (sweep.start, sweep.end)
        else:
            assert isinstance(sweep, ChoiceSweep), key
            lows_highs = (sweep.list[0], sweep.list[-1])
        for end, value in zip(ends, lows_highs, strict=True):
            end.append(f"{key}={value}")
    for end in ends:  # the corners of the search space compose and fit the constructors' types
        check_config(compose_cfg("config", [*base, *end]))


def test_train_returns_the_optimized_metric_to_hydra(caplog):
    cfg = OmegaConf.create({"optimized_metric": "test/gold/recall@5"})
    assert _metric({"test/gold/recall@5": 0.5, "train/questions": 8.0}, cfg) == 0.5
    assert _metric({"train/questions": 8.0}, cfg) is None  # evaluate=false: nothing to optimise
    assert "optimized_metric <test/gold/recall@5> is not among" in caplog.text
    assert _metric({"train/questions": 8.0}, OmegaConf.create({})) is None


@pytest.mark.parametrize("launcher", options("hydra/launcher"))
def test_launchers_compose_and_instantiate(compose_cfg, launcher):
    cfg = compose_cfg("config", [f"hydra/launcher={launcher}"])
    built = instantiate(cfg.hydra.launcher)
    assert type(built).__name__ == {"parallel": "JoblibLauncher", "slurm": "SlurmLauncher"}[launcher]
    if launcher == "slurm":
        for key in ("partition", "gpus_per_node", "timeout_min", "mem_gb", "setup"):
            assert key in cfg.hydra.launcher, key


def test_slurm_launcher_keys_become_an_sbatch_script(compose_cfg, tmp_path, monkeypatch):
    """submitit accepts every key of hydra/launcher=slurm; mapped as the plugin maps them (no cluster needed)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")  # submitit's SLURM executor only checks that srun exists
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_cfg("config", ["+sweep=teacher_x_loss", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(params, dict)
    for key in ("_target_", "submitit_folder", "max_num_timeout"):  # the plugin passes these to the constructor
        params.pop(key)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m job", "uid")  # private: the sbatch text
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=240", "--mem=32GB", "--job-name=teacher_x_loss"):
        assert f"#SBATCH {line}" in script, line


# ---- real multiruns on the fixture --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_encoder_dir) -> list[str]:
    """Overrides that shrink a run to seconds: the fixture, a 2-layer encoder, 24 questions, no BM25 baseline."""
    return [
        "experiment=fixture_smoke",
        f"retriever.path={tiny_encoder_dir}",
        "data.n_train=24",
        "data.n_eval=12",
        "datamodule.val_size=8",
        "evaluation.bm25_baseline=false",
        "evaluation.fusion=none",
        "evaluation.save_index=false",
        "evaluation.ks=[1,5]",
        "evaluation.depth=20",
        "~callbacks.progress_bar",
    ]


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "ragdistill-train"), *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _trained(n_train: int) -> int:
    """Questions trained on: the datamodule holds out val_size=8 for val/loss, at most a fifth of them."""
    return n_train - min(8, n_train // 5)


def _jobs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _metrics(job: Path) -> dict[str, float]:
    return json.loads((job / "metrics.json").read_text())


def _choices(job: Path) -> dict[str, str]:
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]


def test_sweep_file_on_the_parallel_launcher_runs_two_jobs_at_once(tmp_path, tiny):
    sweep_dir = tmp_path / "multirun"
    overrides = ["teacher=gold", "loss=kl,ranknet", "evaluate=false", f"hydra.sweep.dir={sweep_dir}"]
    done = _train("-m", "+sweep=teacher_x_loss", "hydra/launcher=parallel", *tiny, *overrides, cwd=tmp_path)
    assert "Joblib.Parallel(n_jobs=2," in done.stdout + done.stderr
    jobs = _jobs(sweep_dir)
    assert [_choices(j)["loss"] for j in jobs] == ["kl", "ranknet"]  # the command line replaced the loss axis
    assert all(_metrics(j)["train/questions"] == _trained(24) for j in jobs)

    report = subprocess.run(
        [str(BIN / "ragdistill-report"), str(sweep_dir)], capture_output=True, text=True, cwd=tmp_path, env=ENV
    )
    assert report.returncode == 0, report.stderr
    table = (sweep_dir / "report" / "report.md").read_text()
    assert "KLDistillLoss" in table and "RankNetLoss" in table


def test_sweep_file_on_submitit_local_runs_each_job_in_its_own_process(tmp_path, tiny):
    sweep_dir = tmp_path / "multirun"
    overrides = ["data.n_train=16,24", "evaluate=false", f"hydra.sweep.dir={sweep_dir}"]
    _train("-m", "+sweep=train_size", "hydra/launcher=submitit_local", *tiny, *overrides, cwd=tmp_path)
    jobs = _jobs(sweep_dir)
    assert [_metrics(j)["train/questions"] for j in jobs] == [_trained(16), _trained(24)]
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2


def test_optuna_search_returns_the_optimized_metric_and_shares_the_teacher_cache(tmp_path, tiny):
    sweep_dir = tmp_path / "multirun"
    # no -m: the search file sets hydra.mode=MULTIRUN
    _train(
        "hparams_search=retriever_optuna",
        "hydra.sweeper.n_trials=2",
        *tiny,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    jobs = _jobs(sweep_dir)
    # the search optimises recall@5 on the held-out training questions, never on the reported data.eval
    values = [_metrics(j)["val/gold/recall@5"] for j in jobs]
    assert len(values) == 2 and results["name"] == "optuna"
    assert math.isclose(results["best_value"], max(values))
    assert set(results["best_params"]) == {
        "retriever.optimizer.lr",
        "loss.temperature",
        "retriever.scheduler.warmup_ratio",
        "datamodule.group_size",
    }
    # trial 0 scored the gold teacher into paths.cache_dir; trial 1 (same teacher, other loss settings) read it
    assert _metrics(jobs[0])["teacher/cache_shards_reused"] == 0
    assert _metrics(jobs[1])["teacher/cache_shards_reused"] == _metrics(jobs[1])["teacher/cache_shards_total"] > 0


def test_a_four_run_loss_sweep_scores_the_lm_teacher_once(tmp_path, tiny, tiny_lm_dir):
    sweep_dir = tmp_path / "multirun"
    lm_teacher = ["teacher=lm_likelihood", "lm=hf", f"lm.path={tiny_lm_dir}", "teacher.num_candidates=4"]
    lm_teacher += ["teacher.max_passage_tokens=48", "teacher.precision=32-true", "datamodule.group_size=null"]
    # the file's loss axis: kl, listmle, ranknet, margin_mse; one teacher
    _train("+sweep=teacher_x_loss", *tiny, *lm_teacher, "evaluate=false", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    jobs = [_metrics(j) for j in _jobs(sweep_dir)]
    assert [j["teacher/cache_shards_scored"] for j in jobs] == [1, 0, 0, 0]  # 24 questions: one shard
    assert [j["teacher/cache_shards_reused"] for j in jobs] == [0, 1, 1, 1]
    assert jobs[0]["runtime/teacher_scoring_s"] > 0 and all(j["runtime/teacher_scoring_s"] == 0 for j in jobs[1:])

    files = build_report([sweep_dir])
    section = files.markdown.read_text().split("## Teacher cache", 1)[1]
    assert "| LMLikelihoodTeacher | 4 | 1 | 3 |" in section
