"""Every error a user can cause: one line on stderr naming the problem and what to do, exit 1, no traceback,
and, wherever it can be known then, before any data loads (issue 29).

The command-line cases run the real ``ragdistill-train`` (~10 s each, most of it imports); the in-process
cases show that the pipeline stops before its first stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.errors import InstantiationException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ragdistill import pipeline
from ragdistill.cli import RunInputError, run_task, user_error
from ragdistill.data.errors import DataValidationError
from ragdistill.models.locate import ModelNotFoundError
from ragdistill.utils.errors import ConfigError

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ENV.pop("HYDRA_FULL_ERROR", None)
UNWRITABLE = "/proc/ragdistill-cannot-write-here"  # mkdir fails there even for root


def _train(*overrides: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "ragdistill-train"), "experiment=fixture_smoke", *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env or ENV, timeout=600)


def _assert_one_line(
    done: subprocess.CompletedProcess[str], start: str | tuple[str, ...], *named: str, data_loads: bool = False
) -> str:
    """Exit 1, exactly one non-blank stderr line starting with ``start`` and naming ``named``; no traceback.

    ``data_loads``: the error is found while reading the data (a corrupt file), so that stage may have begun.
    """
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr[-3000:]
    assert all(name in lines[0] for name in named), lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert data_loads or "Instantiating data" not in done.stdout  # nothing was loaded
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "start", "named"),
    [
        (["evaluation.ks=[0]"], "ConfigError: evaluation.ks", ()),
        (["evaluation.depth=0"], "ConfigError: evaluation.depth", ()),
        (["evaluation.fusion=nope"], "ConfigError: evaluation.fusion", ("'nope'",)),
        (["evaluation.ks=[1,500]"], "ConfigError: evaluation.ks=[1, 500] goes beyond evaluation.depth=100", ()),
        (["optimized_metric=val/gold/recall@7"], "ConfigError: optimized_metric='val/gold/recall@7'", ()),
        (["data=jsonl"], "ConfigError: mandatory values missing", ("data.corpus_path", "data.eval_path")),
        (["+ckpt=last.ckpt"], "ConfigError: +ckpt=last.ckpt: ragdistill reads no top-level key 'ckpt'", ()),
        (["ckpt_path=/nonexistent/last.ckpt"], "ConfigError: ckpt_path='/nonexistent/last.ckpt'", ()),
        ([f"paths.cache_dir={UNWRITABLE}"], "UnwritableDirError: paths.cache_dir=", (UNWRITABLE,)),
        ([f"hydra.run.dir={UNWRITABLE}"], "UnwritableDirError: hydra.run.dir=", (UNWRITABLE,)),
    ],
)
def test_a_user_error_is_one_line_before_any_work(tmp_path, overrides, start, named):
    given = {o.partition("=")[0] for o in overrides}
    places = {"hydra.run.dir": tmp_path / "run", "paths.cache_dir": tmp_path / "cache"}
    done = _train(*overrides, *(f"{k}={v}" for k, v in places.items() if k not in given), cwd=tmp_path)
    _assert_one_line(done, start, *named)


def test_a_gpu_trainer_without_a_gpu_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = _train("trainer=gpu", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    _assert_one_line(done, "ConfigError: trainer.accelerator='gpu'", "trainer=cpu")


def test_a_data_error_inside_hydras_instantiate_is_its_own_line(tmp_path):
    """A duplicate passage id: the data module's ``file line N: message``, not InstantiationException's repr."""
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "eval.jsonl"
    rows = [{"id": "p1", "text": "a"}, {"id": "p1", "text": "b"}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    questions.write_text(json.dumps({"id": "q1", "question": "?", "answers": ["a"]}) + "\n")
    done = _train(
        "data=jsonl",
        f"data.corpus_path={corpus}",
        f"data.eval_path={questions}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"DataValidationError: {corpus}") and "'p1'" in lines[0], lines[0]
    assert "InstantiationException" not in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_cut_offs_beyond_the_corpus_are_one_line_before_training(tmp_path):
    """Three passages and the default ks up to 100: recall@5 would be 1 for any retriever; refused after loading."""
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "eval.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": f"passage {i}"}) + "\n" for i in range(3)))
    questions.write_text(json.dumps({"id": "q1", "question": "?", "answers": ["a"], "positive_ids": ["p1"]}) + "\n")
    done = _train(
        "data=jsonl",
        f"data.corpus_path={corpus}",
        f"data.eval_path={questions}",
        f"data.train_path={questions}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    line = _assert_one_line(done, "ConfigError: evaluation.ks=[1, 5, 20, 100]", "3 passages", data_loads=True)
    assert "evaluation.ks=[1]" in line
    assert "Instantiating retriever" not in done.stdout  # nothing built, nothing trained


def test_hydra_full_error_shows_the_chain(tmp_path):
    done = _train(
        "evaluation.depth=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=ENV | {"HYDRA_FULL_ERROR": "1"}
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "evaluation.depth" in done.stderr


# --- in process ---------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Make loading data or fitting the first stage fail the test: an up-front check must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("an expensive stage started")

    monkeypatch.setattr(pipeline, "_build", refuse)
    monkeypatch.setattr(pipeline.BM25Candidates, "fit", refuse)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluation.ks=[0]", r"^evaluation\.ks must be"),
        ("evaluation.depth=0", r"^evaluation\.depth=0 \(int\) does not fit .*EvaluationSettings: expected int >= 1$"),
        ("evaluation.fusion=nope", r"^evaluation\.fusion must be one of"),
        ("evaluation.ks=[5,200]", r"goes beyond evaluation\.depth=100.*raise evaluation\.depth to 200"),
        ("evaluation.encode_quantize=int4", r"evaluation\.encode_quantize"),
        ("optimized_metric=test_fusion_wsum/gold/recall@5", r"makes no test_fusion_wsum/\.\.\. figures"),
        ("datamodule.val_size=0", r"optimized_metric='val/gold/recall@5': .*no val/"),
        ("+ckpt_path2=x", r"reads no top-level key 'ckpt_path2'"),
        ("teacher_shard_passages=0", r"teacher_shard_passages=0 .*expected int >= 1"),
        ("teacher_save_every_passages=0", r"teacher_save_every_passages=0 .*expected int >= 1 or None"),
        ("data=jsonl", r"mandatory values missing: data\.corpus_path, data\.eval_path"),
        ("retriever=hf", r"mandatory values missing: retriever\.path"),  # once silently the packaged MiniLM
        ("lm=hf", r"mandatory values missing: lm\.path"),
    ],
)
def test_train_refuses_before_loading_data(compose_cfg, no_work, override, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.train(compose_cfg("config", ["experiment=fixture_smoke", override]))


def test_an_unwritable_cache_dir_is_refused_before_loading_data(compose_cfg, no_work):
    cfg = compose_cfg("config", ["experiment=fixture_smoke"])
    cfg.paths.cache_dir = UNWRITABLE
    with pytest.raises(OSError, match=r"^paths\.cache_dir='/proc/.*' cannot be written .*writable directory$"):
        pipeline.train(cfg)


@pytest.mark.parametrize(
    "error",
    [
        DataValidationError("corpus.jsonl", "duplicate passage id 'p3' (first seen on line 2)", 12),
        ModelNotFoundError("/nonexistent exists but is not a model folder (no config.json inside)"),
        ConfigError("evaluation.depth must be an integer >= 1, got 0"),
    ],
)
def test_input_errors_wrapped_by_instantiate_are_unwrapped(tmp_path, error):
    def task(cfg):
        try:
            raise error
        except Exception as inner:
            raise InstantiationException(f"Error in call to target 'x':\n{inner!r}") from inner

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    with pytest.raises(RunInputError) as raised:
        run_task(task, cfg)
    assert str(raised.value) == f"{type(error).__name__}: {error} (run dir <{tmp_path}>)"
    assert "\n" not in str(raised.value) and raised.value.__cause__ is error


def test_an_unexpected_error_is_not_taken_for_a_user_error():
    try:
        try:
            raise KeyError("x")
        except KeyError as inner:
            raise RuntimeError("bug") from inner
    except RuntimeError as outer:
        assert user_error(outer) is None


def test_missing_values_are_named_all_at_once_by_run_task(tmp_path):
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "data": {"a": "???", "b": "???"}})
    with pytest.raises(RunInputError, match=r"^ConfigError: mandatory values missing: data\.a, data\.b;"):
        run_task(lambda c: pytest.fail("the task ran"), cfg)


# --- warnings that are true ---------------------------------------------------------------------


@pytest.mark.parametrize(("batches", "asked", "expected"), [(3, 10, 3), (500, 10, 10), (1, 50, 1), (40, 10, 10)])
def test_log_every_is_capped_at_an_epochs_batches(batches, asked, expected):
    """A 3-batch run logs its loss (and Lightning does not warn that it will not); a long run keeps its setting."""
    trainer = SimpleNamespace(log_every_n_steps=asked, world_size=1)
    datamodule = SimpleNamespace(train_dataloader=lambda: range(batches))
    pipeline._log_every(trainer, datamodule)
    assert trainer.log_every_n_steps == expected


def test_an_endpoint_that_does_not_answer_is_a_user_error():
    """``ChatAPIError`` is matched by name: the CLI does not import the HTTP client for ``--help``."""
    from ragdistill.models.chat_api import ChatAPIError

    error = ChatAPIError("POST http://localhost:9/v1/chat/completions failed after 3 retries: connection refused")
    try:
        try:
            raise error
        except ChatAPIError as inner:
            raise RuntimeError("future failed") from inner
    except RuntimeError as outer:
        assert user_error(outer) is error


# --- any bad input, drawn at random: one line, exit 1, no traceback --------------------------------------------

FIXTURE = Path(__file__).resolve().parents[1] / "src" / "ragdistill" / "data" / "fixture"
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
BAD_OVERRIDES = st.one_of(
    st.builds("datamodule.batch_size={}".format, st.integers(max_value=0) | WORDS),
    st.builds("loss.temperature={}".format, st.floats(max_value=0, allow_nan=False, allow_infinity=False)),
    st.builds("index.kind={}".format, WORDS.filter(lambda w: w not in ("flat", "hnsw", "ivfpq"))),
    st.builds("retriever.pooling={}".format, WORDS.filter(lambda w: w not in ("mean", "cls"))),
    st.builds("teacher.num_candidates={}".format, st.integers(max_value=0)),
    st.builds("evaluation.ks=[{}]".format, st.integers(max_value=0)),
    st.builds("data.n_eval={}".format, st.integers(max_value=-1)),
    st.builds("+{}.{}=1".format, WORDS, WORDS),
)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(override=BAD_OVERRIDES)
def test_any_bad_override_is_one_line_before_any_work(tmp_path, override):
    done = _train(override, f"hydra.run.dir={tmp_path}/run", f"paths.cache_dir={tmp_path}/cache", cwd=tmp_path)
    _assert_one_line(done, ("ConfigError: ", "Could not override", "Key '"))


def _corrupt(lines: list[str], line: int, how: str) -> list[str]:
    """``lines`` of a JSONL file with line ``line`` broken in a way no reader may accept silently."""
    record = json.loads(lines[line])
    broken = {
        "truncate": lines[line][: len(lines[line]) // 2],
        "not json": "<<<" + lines[line],
        "no id": json.dumps({k: v for k, v in record.items() if k != "id"}),
        "duplicate id": json.dumps({**json.loads(lines[(line + 1) % len(lines)]), "title": "copy"}),
        "id not a string": json.dumps({**record, "id": [1, 2]}),
    }[how]
    return [*lines[:line], broken, *lines[line + 1 :]]


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corrupted_data_file_is_one_line_naming_file_and_line(tmp_path, data):
    lines = (FIXTURE / "corpus.jsonl").read_text().splitlines()
    line = data.draw(st.integers(0, len(lines) - 1), label="line")
    how = data.draw(st.sampled_from(["truncate", "not json", "no id", "duplicate id", "id not a string"]), label="how")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(_corrupt(lines, line, how)) + "\n")
    done = _train(
        "data=jsonl",
        f"data.corpus_path={corpus}",
        f"data.eval_path={FIXTURE / 'eval.jsonl'}",
        f"data.train_path={FIXTURE / 'train.jsonl'}",
        f"hydra.run.dir={tmp_path}/run",
        f"paths.cache_dir={tmp_path}/cache",
        cwd=tmp_path,
    )
    _assert_one_line(done, "DataValidationError: ", str(corpus), f"line {line + 1}", data_loads=True)
