"""A run killed (SIGKILL, the worst case: no handler runs) during teacher scoring loses at most one shard.

The same command run again reuses the finished shards, scores the rest, and ends with the metrics and the
cached signals of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def _shards(cache: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in cache.glob("teacher_signals/*/shard-*.json")}


def _finished(tmp_path: Path, command: list[str]) -> dict[str, float]:
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = Path(command[-1].split("=", 1)[1])
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_a_run_killed_during_teacher_scoring_finishes_like_an_uninterrupted_one(tmp_path, tiny_encoder_dir):
    command = _command(tmp_path, tiny_encoder_dir, "cache", "killed")
    process = subprocess.Popen(
        command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not _shards(tmp_path / "cache") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed between its two shards"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert len(_shards(tmp_path / "cache")) == 1  # killed while scoring the second shard
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = _finished(tmp_path, _command(tmp_path, tiny_encoder_dir, "cache", "resumed"))
    assert resumed["teacher/cache_shards_reused"] == 1 and resumed["teacher/cache_shards_scored"] == 1

    uninterrupted = _finished(tmp_path, _command(tmp_path, tiny_encoder_dir, "fresh_cache", "uninterrupted"))
    assert uninterrupted["teacher/cache_shards_scored"] == 2
    assert _shards(tmp_path / "cache") == _shards(tmp_path / "fresh_cache")  # byte for byte, same names

    def computed(metrics: dict[str, float]) -> dict[str, float]:
        return {key: value for key, value in metrics.items() if not key.startswith(VARIES)}

    assert computed(resumed) == computed(uninterrupted)
    assert "test/gold/recall@5" in computed(resumed) and "teacher/top1_gold" in computed(resumed)
