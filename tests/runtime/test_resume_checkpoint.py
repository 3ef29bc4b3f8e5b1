"""Training that crashed mid-epoch resumes from its checkpoint and ends exactly where an uninterrupted run ends.

In-process and fast (tiny BERT with dropout, the fixture's questions, 2 epochs of 13 steps); the real
SIGKILL of a subprocess during training is in ``tests/test_resume.py`` (slow).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from ragdistill.pipeline import train
from ragdistill.runtime.resume import CHECKPOINT_FILE, ResumeCheckpoint
from ragdistill.utils.manifest import MANIFEST_FILE

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

CRASH_AT_STEP = 17
"""Mid-way through the second epoch, four steps after the last save (every 2 steps would be too kind)."""
SAVE_EVERY = 5


class SimulatedCrash(RuntimeError):
    """Stands in for a kill: raised inside training, after the resume checkpoint of that step was written."""


def _config(compose_at: Any, tiny_encoder_dir: Path, run_dir: Path, cache: Path) -> Any:
    cfg = compose_at(
        "config",
        [
            "experiment=fixture_smoke",
            "trainer.max_epochs=2",
            f"retriever.path={tiny_encoder_dir}",
            "evaluation.bm25_baseline=false",
            f"resume_every_n_steps={SAVE_EVERY}",
        ],
        run_dir,
    )
    cfg.paths.cache_dir = str(cache)
    return cfg


def _weights(objects: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in objects["retriever"].state_dict().items()}


def _computed(metrics: dict[str, float]) -> dict[str, float]:
    """The figures a run computed, without those saying how it got there (timings, cache hits)."""
    return {key: value for key, value in metrics.items() if not key.startswith(("runtime/", "teacher/cache_"))}


def _crash_at(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    save = ResumeCheckpoint.on_train_batch_end

    def save_then_crash(self: ResumeCheckpoint, trainer: Any, *args: Any) -> None:
        save(self, trainer, *args)
        if trainer.global_step == step:
            raise SimulatedCrash(f"killed at step {step}")

    monkeypatch.setattr(ResumeCheckpoint, "on_train_batch_end", save_then_crash)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory, compose_at: Any, tiny_encoder_dir: Path) -> Path:
    """The cache dir a run crashed at :data:`CRASH_AT_STEP` left behind (copy it before changing it)."""
    root = tmp_path_factory.mktemp("crashed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _crash_at(CRASH_AT_STEP, monkeypatch)
        with pytest.raises(SimulatedCrash):
            train(_config(compose_at, tiny_encoder_dir, root / "run", root / "cache"))
    return root / "cache"


def _copy(cache: Path, tmp_path: Path) -> Path:
    shutil.copytree(cache, tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, compose_at: Any, tiny_encoder_dir: Path) -> Any:
    root = tmp_path_factory.mktemp("uninterrupted")
    metrics, objects = train(_config(compose_at, tiny_encoder_dir, root / "run", root / "cache"))
    assert objects["trainer"].global_step > CRASH_AT_STEP + 2, "the crash must fall inside training"
    return metrics, _weights(objects), root / "cache"


def test_a_run_crashed_mid_epoch_resumes_and_ends_like_an_uninterrupted_one(
    uninterrupted: Any, crashed: Path, tmp_path: Path, compose_at: Any, tiny_encoder_dir: Path
) -> None:
    expected_metrics, expected_weights, _ = uninterrupted
    cache = _copy(crashed, tmp_path)
    (saved,) = cache.glob(f"resume/*/{CHECKPOINT_FILE}")
    assert torch.load(saved, weights_only=True)["global_step"] == CRASH_AT_STEP - CRASH_AT_STEP % SAVE_EVERY

    metrics, objects = train(_config(compose_at, tiny_encoder_dir, tmp_path / "rerun", cache))

    assert metrics["runtime/resumed"] == 1.0
    assert _computed(metrics) == _computed(expected_metrics)
    weights = _weights(objects)
    assert all(torch.equal(weights[name], expected_weights[name]) for name in expected_weights)
    assert not list(cache.glob("resume/*")), "a finished run deletes its resume checkpoint"


def test_a_corrupt_resume_checkpoint_is_reported_and_training_starts_over(
    uninterrupted: Any,
    crashed: Path,
    tmp_path: Path,
    compose_at: Any,
    tiny_encoder_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected_metrics, expected_weights, _ = uninterrupted
    cache = _copy(crashed, tmp_path)
    (saved,) = cache.glob(f"resume/*/{CHECKPOINT_FILE}")
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: only the checksum can tell
    saved.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="ragdistill.runtime.resume"):
        metrics, objects = train(_config(compose_at, tiny_encoder_dir, tmp_path / "rerun", cache))

    assert "fails its checksum" in caplog.text and "training from the start" in caplog.text
    assert metrics["runtime/resumed"] == 0.0
    assert _computed(metrics) == _computed(expected_metrics)
    weights = _weights(objects)
    assert all(torch.equal(weights[name], expected_weights[name]) for name in expected_weights)


def test_an_interrupted_save_is_never_resumed(
    uninterrupted: Any, crashed: Path, tmp_path: Path, compose_at: Any, tiny_encoder_dir: Path
) -> None:
    cache = _copy(crashed, tmp_path)
    (manifest,) = cache.glob(f"resume/*/{MANIFEST_FILE}")
    manifest.unlink()  # what a kill between the checkpoint's rename and its manifest leaves

    metrics, _ = train(_config(compose_at, tiny_encoder_dir, tmp_path / "rerun", cache))

    assert metrics["runtime/resumed"] == 0.0
    assert _computed(metrics) == _computed(uninterrupted[0])


def test_resuming_can_be_switched_off(tmp_path: Path, compose_at: Any, tiny_encoder_dir: Path) -> None:
    cfg = _config(compose_at, tiny_encoder_dir, tmp_path / "run", tmp_path / "cache")
    cfg.resume_every_n_steps = None
    cfg.trainer.max_epochs = 1
    metrics, _ = train(cfg)
    assert metrics["runtime/resumed"] == 0.0
    assert not (tmp_path / "cache" / "resume").exists()


def test_every_n_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_n_steps must be >= 1, got 0"):
        ResumeCheckpoint(every_n_steps=0)
