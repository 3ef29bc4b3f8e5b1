"""A run killed (SIGKILL, the worst case: no handler runs) loses at most the work since its last save.

Killed during teacher scoring, the same command run again reuses the finished shards, goes on inside the
shard it was scoring from its progress file, and scores the rest;
killed during training, it continues from the last resume checkpoint, mid-epoch; killed while the trained
retriever indexes the corpus, it skips training (the checkpoint saved at the end of ``fit``) and indexes
again. Each ends with the metrics of a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
VARIES = ("runtime/", "teacher/cache_shards_", "teacher/passages")
"""Figures that say how the run got its signals, not what it computed: left out of the comparison."""


def _command(tmp_path: Path, tiny_encoder_dir: Path, cache: str, run: str) -> list[str]:
    """The real packaged SmolLM2 scores the fixture's 120 training questions (two shards) x 4 candidates."""
    return [
        str(BIN / "ragdistill-train"),
        "experiment=fixture_smoke",
        "teacher=lm_likelihood",
        "teacher.num_candidates=4",
        "loss=kl",
        "datamodule.group_size=null",
        f"retriever.path={tiny_encoder_dir}",
        "evaluation.bm25_baseline=false",
        f"lm.cache_dir={tmp_path / 'lm'}",  # the converted LM, shared by the three runs
        f"paths.cache_dir={tmp_path / cache}",
        f"hydra.run.dir={tmp_path / run}",
    ]


def _shards(cache: Path, *, partial: bool = False) -> dict[str, bytes]:
    """Finished shards (or the progress files of unfinished ones) by file name."""
    files = cache.glob("teacher_signals/*/shard-*.json")
    return {path.name: path.read_bytes() for path in files if path.name.endswith(".partial.json") == partial}


def _kill_when(command: list[str], cwd: Path, ready: Callable[[], bool]) -> None:
    """Start ``command``, SIGKILL its whole process group as soon as ``ready()``; fail if it ends first."""
    process = subprocess.Popen(
        command, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _finished(tmp_path: Path, command: list[str]) -> dict[str, float]:
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = Path(command[-1].split("=", 1)[1])
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_a_run_killed_during_teacher_scoring_finishes_like_an_uninterrupted_one(tmp_path, tiny_encoder_dir):
    """Two shards of 240 passages, progress saved every 120: killed inside the second, after its first step."""
    command = _command(tmp_path, tiny_encoder_dir, "cache", "killed")
    cache = tmp_path / "cache"
    _kill_when(command, tmp_path, lambda: bool(_shards(cache)) and bool(_shards(cache, partial=True)))
    assert len(_shards(cache)) == 1 and len(_shards(cache, partial=True)) == 1
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = _finished(tmp_path, _command(tmp_path, tiny_encoder_dir, "cache", "resumed"))
    assert resumed["teacher/cache_shards_reused"] == 1 and resumed["teacher/cache_shards_scored"] == 1
    logged = "".join(log.read_text() for log in (tmp_path / "resumed").glob("*.log"))
    assert "going on after 30 of its 60 questions" in logged  # the second shard's first step was kept
    assert not _shards(tmp_path / "cache", partial=True)

    uninterrupted = _finished(tmp_path, _command(tmp_path, tiny_encoder_dir, "fresh_cache", "uninterrupted"))
    assert uninterrupted["teacher/cache_shards_scored"] == 2
    assert _shards(tmp_path / "cache") == _shards(tmp_path / "fresh_cache")  # byte for byte, same names

    assert _computed(resumed) == _computed(uninterrupted)
    assert "test/gold/recall@5" in _computed(resumed) and "teacher/top1_gold" in _computed(resumed)


def _training_command(tmp_path: Path, tiny_encoder_dir: Path, run: str) -> list[str]:
    """Two epochs of 13 steps with dropout (tiny BERT), a resume checkpoint every 5 steps, one shared cache."""
    return [
        str(BIN / "ragdistill-train"),
        "experiment=fixture_smoke",
        "trainer.max_epochs=2",
        "resume_every_n_steps=5",
        f"retriever.path={tiny_encoder_dir}",
        "evaluation.bm25_baseline=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / run}",
    ]


def _resume_step(cache: Path) -> int:
    """The step of the newest complete resume checkpoint in ``cache`` (its manifest records it), or -1."""
    steps = [-1]
    for manifest in cache.glob("resume/*/manifest.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):  # being replaced right now
            steps.append(int(json.loads(manifest.read_text())["global_step"]))
    return max(steps)


def _computed(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if not key.startswith(VARIES)}


@pytest.fixture(scope="module")
def uninterrupted_training(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, float]:
    root = tmp_path_factory.mktemp("uninterrupted")
    metrics = _finished(root, _training_command(root, tiny_encoder_dir, "run"))
    assert metrics["runtime/resumed"] == 0.0
    return metrics


@pytest.mark.slow
def test_a_run_killed_during_training_resumes_mid_epoch_and_ends_like_an_uninterrupted_one(
    tmp_path: Path, tiny_encoder_dir: Path, uninterrupted_training: dict[str, float]
) -> None:
    _kill_when(
        _training_command(tmp_path, tiny_encoder_dir, "killed"),
        tmp_path,
        lambda: _resume_step(tmp_path / "cache") >= 15,
    )
    assert 15 <= _resume_step(tmp_path / "cache") < 26  # killed in the second epoch, before the end of training
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = _finished(tmp_path, _training_command(tmp_path, tiny_encoder_dir, "resumed"))

    assert resumed["runtime/resumed"] == 1.0
    assert _computed(resumed) == _computed(uninterrupted_training)
    assert not list((tmp_path / "cache").glob("resume/*")), "a finished run deletes its resume checkpoint"


@pytest.mark.slow
def test_a_run_killed_while_indexing_skips_training_and_ends_like_an_uninterrupted_one(
    tmp_path: Path, tiny_encoder_dir: Path, uninterrupted_training: dict[str, float]
) -> None:
    exported = tmp_path / "killed" / "retriever" / "model.safetensors"  # written right before evaluation starts
    _kill_when(_training_command(tmp_path, tiny_encoder_dir, "killed"), tmp_path, exported.exists)
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = _finished(tmp_path, _training_command(tmp_path, tiny_encoder_dir, "resumed"))

    assert resumed["runtime/resumed"] == 1.0 and resumed["runtime/fit_s"] < uninterrupted_training["runtime/fit_s"]
    assert _computed(resumed) == _computed(uninterrupted_training)


# --- a resume checkpoint that cannot be saved; ckpt_path (fast, in process) -------------------------


class _Trainer:
    """What ``ResumeCheckpoint`` asks of a trainer: its step, whether it is sanity checking, and a save."""

    global_step = 5
    sanity_checking = False

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.saves = 0

    def save_checkpoint(self, path, weights_only=False):
        self.saves += 1
        if self.error is not None:
            raise self.error
        Path(path).write_bytes(b"state")


def test_a_resume_checkpoint_that_cannot_be_saved_warns_once_and_training_goes_on(tmp_path, caplog):
    """A full or read-only cache dir used to end a finished fit with a traceback (issue 29); now it warns."""
    import logging

    from ragdistill.runtime.resume import ResumeCheckpoint

    callback = ResumeCheckpoint(every_n_steps=1)
    callback.use(tmp_path / "resume")
    trainer = _Trainer(OSError(28, "No space left on device"))
    with caplog.at_level(logging.WARNING, logger="ragdistill.runtime.resume"):
        callback.on_train_batch_end(trainer, None)
        callback.on_train_batch_end(trainer, None)
        callback.on_train_end(trainer, None)
    assert trainer.saves == 1  # it stops trying: each save of MiniLM with AdamW state is ~270 MB
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "No space left on device" in warned[0] and "training goes on" in warned[0]


def _module():
    import pytorch_lightning as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    return Tiny()


def test_ckpt_path_of_weights_only_loads_the_weights_and_trains_from_step_0(tmp_path):
    import torch

    from ragdistill.runtime.resume import start_from

    trained, fresh = _module(), _module()
    with torch.no_grad():
        trained.layer.weight.fill_(0.25)
    torch.save({"state_dict": trained.state_dict(), "global_step": 7}, tmp_path / "weights.ckpt")
    assert start_from(fresh, tmp_path / "weights.ckpt") is None  # nothing for Lightning to resume
    assert torch.equal(fresh.layer.weight, trained.layer.weight)
    assert start_from(fresh, None) is None


def test_ckpt_path_of_a_full_checkpoint_is_resumed_by_lightning(tmp_path):
    import torch

    from ragdistill.runtime.resume import start_from

    module = _module()
    full = {"state_dict": module.state_dict(), "optimizer_states": [{}], "loops": {}, "global_step": 7}
    torch.save(full, tmp_path / "full.ckpt")
    assert start_from(module, tmp_path / "full.ckpt") == tmp_path / "full.ckpt"


def test_ckpt_path_starts_training_from_a_runs_checkpoint(compose_cfg, tiny_encoder_dir, monkeypatch, tmp_path):
    """A run's ``checkpoints/*.ckpt`` (``callbacks=checkpoints``, weights only) as ``ckpt_path=``: fit starts there."""
    import pytorch_lightning as pl
    import torch

    from ragdistill import pipeline

    tiny = [
        "experiment=fixture_smoke",
        f"retriever.path={tiny_encoder_dir}",
        "data.n_train=24",
        "datamodule.val_size=8",
        "evaluate=false",
        "callbacks=checkpoints",
        "~callbacks.progress_bar",
    ]
    _, first = pipeline.train(compose_cfg("config", tiny))
    (written,) = (Path(first["trainer"].default_root_dir) / "checkpoints").glob("*.ckpt")
    seen = {}

    def fit(self, model, datamodule=None, ckpt_path=None, weights_only=None):
        seen["ckpt_path"], seen["state"] = ckpt_path, {k: v.clone() for k, v in model.state_dict().items()}
        raise KeyboardInterrupt  # stop here: what fit was handed is the point

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    second = compose_cfg("config", [*tiny, f"ckpt_path={written}"])
    second.paths.output_dir = str(tmp_path / "second")
    with pytest.raises(KeyboardInterrupt):
        pipeline.train(second)
    trained = first["retriever"].state_dict()
    assert seen["ckpt_path"] is None  # weights only: nothing for Lightning to resume, it trains from step 0
    assert all(torch.equal(seen["state"][key], value) for key, value in trained.items())
