"""The black-box LLM ranking teacher against a real OpenAI-compatible server (llama.cpp serving SmolLM2-135M).

What the fake server of ``tests/models/test_chat_api.py`` cannot show: a real server's answers, its
authentication, its token usage, and the whole ``ragdistill-train`` run talking to it. SmolLM2-135M does not
follow listwise ranking instructions, so these tests check the plumbing and the parser's repair counts, not
ranking quality. Run them with ``pytest -m llm_server`` (needs ``make server``; ~1 min).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from llm_server import MODEL_ALIAS, free_port, server_fixture
from ragdistill.cli import CONFIG_PATH
from ragdistill.models.chat_api import ChatAPIError, ChatClient

pytestmark = [pytest.mark.slow, pytest.mark.llm_server]

KEY_ENV = str(OmegaConf.load(Path(CONFIG_PATH) / "lm" / "base" / "endpoint.yaml").api_key_env)
"""The variable ``teacher/chat@teacher=api`` and ``lm=api`` read the key from (OPENAI_API_KEY)."""
KEY = f"sk-ragdistill-test-{secrets.token_hex(12)}"
"""The server refuses requests without it, so a passing test shows the key was sent."""
K = 4
"""Candidates ranked per question: one window per question, a short prompt for a 135M model on a CPU."""
MAX_TOKENS = 32
"""Room for ``[4] > [3] > [2] > [1]`` and some of the prose SmolLM2 writes instead."""
PASSAGE_CHARS = 160
"""Short passages: prompt reading (~50 tokens/s on a busy 2-core CPU) is most of a request's time."""

llm_server_url = server_fixture(scope="module", api_key=KEY)


def api_overrides(base_url: str) -> list[str]:
    """``teacher=llm_ranking`` through the server, small enough for a 135M model on two CPU threads."""
    return [
        "teacher=llm_ranking",
        "teacher/chat@teacher=api",
        f"teacher.chat.base_url={base_url}",
        f"teacher.chat.model={MODEL_ALIAS}",
        "teacher.chat.progress=false",
        # the server answers one request at a time; more in flight only queue there
        "teacher.chat.max_concurrency=2",
        "teacher.chat.max_retries=1",
        f"teacher.num_candidates={K}",
        f"teacher.max_passage_chars={PASSAGE_CHARS}",
        f"teacher.generation.max_tokens={MAX_TOKENS}",
    ]


def conversation(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": text}]


def test_chat_client_answers_and_repeats_come_from_the_disk_cache(llm_server_url, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cache = tmp_path / "chat_cache"
    asked = conversation("What colour is the sky on a clear day?")
    settings = {"api_key_env": KEY_ENV, "cache_dir": cache, "timeout_s": 60.0, "max_retries": 1, "progress": False}
    with ChatClient(llm_server_url, MODEL_ALIAS, **settings) as client:
        answer = client.complete(asked, temperature=0, max_tokens=24)
        assert answer.strip()
        assert (client.stats.http_requests, client.stats.fetched, client.stats.retries) == (1, 1, 0)
        assert client.complete(asked, temperature=0, max_tokens=24) == answer
        assert (client.stats.http_requests, client.stats.cache_hits) == (1, 1)  # the server was not asked again

    (entry,) = cache.glob("*/*.json")
    record = json.loads(entry.read_text())
    assert record["content"] == answer and record["request"]["messages"] == asked
    assert record["usage"]["completion_tokens"] > 0 and record["finish_reason"] in {"stop", "length"}
    assert KEY not in entry.read_text()

    # The URL is not part of the key: a client whose port nobody listens on answers from the cache alone …
    dead_url = f"http://127.0.0.1:{free_port()}/v1"
    with ChatClient(dead_url, MODEL_ALIAS, **(settings | {"max_retries": 0})) as offline:
        assert offline.complete(asked, temperature=0, max_tokens=24) == answer
        assert offline.stats.http_requests == 0
        # … and really has no server: anything not cached fails, at the probe before the first request
        with pytest.raises(ChatAPIError, match=r"cannot reach .* is the server running"):
            offline.complete(asked, temperature=0, max_tokens=25)


def test_a_wrong_key_is_refused_at_once_and_not_quoted(llm_server_url, monkeypatch):
    wrong = f"sk-wrong-{secrets.token_hex(8)}"
    monkeypatch.setenv(KEY_ENV, wrong)
    with ChatClient(llm_server_url, MODEL_ALIAS, KEY_ENV, max_retries=3, backoff_s=0.01, progress=False) as client:
        with pytest.raises(ChatAPIError) as failure:
            client.complete(conversation("Hello?"), max_tokens=4)
        assert failure.value.status == 401 and client.stats.http_requests == 0  # refused at the probe, not retried
        assert wrong not in str(failure.value)


def test_stage0_ranks_fixture_questions_through_the_server(llm_server_url, compose_cfg, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = compose_cfg("config", ["data=fixture", *api_overrides(llm_server_url)])
    with open_dict(cfg):
        cfg.teacher.generation.stop = ["\n\n"]  # a list-valued parameter reaches the server as JSON
    data = instantiate(cfg.data)
    questions = data.train[:4]
    candidates = instantiate(cfg.candidates).fit(data.corpus).retrieve(questions)

    teacher = instantiate(cfg.teacher)
    signals = teacher.score(questions, candidates, data)
    metrics = teacher.metrics()

    # every question is either scored or counted as dropped; SmolLM2's free text needs repairs
    assert metrics["teacher/llm_outputs"] == len(questions)  # K fits one window: one answer per question
    assert len(signals) + metrics["teacher/llm_dropped"] == len(questions)
    assert metrics["teacher/llm_repaired"] + metrics["teacher/llm_dropped"] <= len(questions)
    assert metrics["teacher/llm_dropped_frac"] == metrics["teacher/llm_dropped"] / len(questions)
    assert metrics["runtime/llm_fetched"] == len(questions) and metrics["runtime/llm_cache_hits"] == 0
    order = {q.id: i for i, q in enumerate(questions)}
    assert [order[s.qid] for s in signals] == sorted(order[s.qid] for s in signals)
    for signal in signals:
        assert signal.candidate_ids == candidates[signal.qid].ids[:K]
        assert sorted(signal.scores.tolist()) == [1.0, 2.0, 3.0, 4.0]  # score = K - position

    # a second teacher over the same cache sends nothing and gives the same signals
    again = instantiate(cfg.teacher)
    repeated = again.score(questions, candidates, data)
    assert again.metrics()["runtime/llm_http_requests"] == 0
    assert again.metrics()["runtime/llm_cache_hits"] == len(questions)
    assert {k: v for k, v in again.metrics().items() if k.startswith("teacher/")} == {
        k: v for k, v in metrics.items() if k.startswith("teacher/")
    }
    assert [s.qid for s in repeated] == [s.qid for s in signals]
    assert all(np.array_equal(a.scores, b.scores) for a, b in zip(repeated, signals, strict=True))


def test_train_run_with_the_served_teacher_writes_repair_counts_and_never_the_key(llm_server_url, tmp_path):
    run_dir = tmp_path / "run"
    n_train = 6
    command = [
        str(Path(sys.executable).parent / "ragdistill-train"),
        "data=fixture",
        f"data.n_train={n_train}",
        "data.n_eval=2",
        *api_overrides(llm_server_url),
        # the teacher gives only an order
        "loss=listmle",
        f"datamodule.group_size={K}",
        "datamodule.batch_size=4",
        "datamodule.val_size=2",
        "trainer.max_epochs=1",
        # the run is about the teacher; evaluating the retriever (encoding the corpus) would double its time
        "evaluate=false",
        f"paths.cache_dir={run_dir / 'cache'}",  # the chat and signal caches, searched for the key below
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", KEY_ENV: KEY}
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher/llm_outputs"] == n_train
    for name in ("repaired", "dropped", "duplicate_ids", "out_of_range_ids", "missing_ids"):
        assert metrics[f"teacher/llm_{name}"] >= 0
    assert metrics["teacher/llm_dropped"] < n_train and metrics["train/questions"] > 0
    assert metrics["runtime/llm_fetched"] == n_train and metrics["runtime/llm_retries"] == 0
    assert len(list((run_dir / "cache" / "chat_responses").glob("*/*.json"))) == n_train

    # the key went only into the Authorization header: not into configs, logs, caches or the retriever
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert any(KEY_ENV.encode() in path.read_bytes() for path in files)  # the name is recorded, the value not
    leaks = [str(path.relative_to(run_dir)) for path in files if KEY.encode() in path.read_bytes()]
    assert not leaks
    assert KEY not in done.stdout + done.stderr
