"""The likelihood teacher through a real OpenAI-compatible server (llama.cpp's, on the packaged SmolLM2 GGUF).

What the fake server of ``tests/teachers/test_served_likelihood.py`` cannot show: a real server's echo (its
special tokens, its generated token, its tokenizer reading our text prompts back), its quantised weights
ranking candidates as the in-process teacher does, and a whole ``ragdistill-train`` run scoring through it.
Run with ``pytest -m llm_server`` (needs ``make server``; ~6 min on 2 cores: llama-cpp-python computes each
echoed log-probability in Python, seconds per prompt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from llm_server import MODEL_ALIAS, server_fixture
from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.fixture import load_fixture
from ragdistill.models.completions_api import CompletionsClient
from ragdistill.models.served_lm import ServedLanguageModel
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

pytestmark = [pytest.mark.slow, pytest.mark.llm_server]

K = 5
"""Candidates per question: enough for a ranking to disagree, short enough for a CPU server."""
SHORT = {"num_candidates": K, "max_passage_tokens": 64, "accelerator": "cpu"}
"""Shared by both teachers: the same prompts (passages cut at 64 tokens keep each echo to ~120 tokens)."""
MIN_SPEARMAN = 0.95
"""Mean per-question rank correlation the served (Q4_1 GGUF) scores must reach with the in-process fp32 ones."""

llm_server_url = server_fixture(scope="module")


def test_served_scores_rank_each_questions_candidates_as_the_in_process_teacher(llm_server_url, packaged_smollm2):
    """Answer likelihood (the other targets read the echo the same way: the fake server's tests compare each)."""
    target = "answer"
    data = load_fixture()
    questions = data.train[:6]
    candidates = BM25Candidates(k=K).fit(data.corpus).retrieve(questions)
    local = LMLikelihoodTeacher(packaged_smollm2, target=target, precision="32-true", **SHORT)
    reference = {s.qid: s.scores for s in local.score(questions, candidates, data)}

    endpoint = CompletionsClient(llm_server_url, MODEL_ALIAS, api_key_env=None, max_concurrency=2, progress=False)
    served_lm = ServedLanguageModel(endpoint, cache_dir=str(packaged_smollm2.cache_dir))
    served = {
        s.qid: s.scores
        for s in LMLikelihoodTeacher(served_lm, target=target, **SHORT).score(questions, candidates, data)
    }

    assert served.keys() == reference.keys() and len(served) == len(questions)
    assert all(np.isfinite(row).all() for row in served.values())  # every echo spelled its target
    rhos = [spearmanr(served[qid], reference[qid]).statistic for qid in reference]
    top1 = np.mean([np.argmax(served[qid]) == np.argmax(reference[qid]) for qid in reference])
    print(f"served vs in-process fp32 ({target}): mean Spearman {np.mean(rhos):.3f}, top-1 agreement {top1:.2f}")
    assert np.mean(rhos) >= MIN_SPEARMAN
    # quantised weights shift each log-probability a little, not wholesale
    gaps = np.concatenate([served[qid] - reference[qid] for qid in reference])
    assert np.abs(gaps).mean() < 0.5 * np.abs(np.concatenate(list(reference.values()))).mean()


def test_a_train_run_scores_through_the_server_and_evaluates(llm_server_url, tmp_path):
    run_dir = tmp_path / "run"
    n_train, k = 4, 4
    command = [
        str(Path(sys.executable).parent / "ragdistill-train"),
        "data=fixture",
        f"data.n_train={n_train}",
        "data.n_eval=8",
        "teacher=lm_likelihood",
        "lm=api",
        f"lm.endpoint.base_url={llm_server_url}",
        f"lm.endpoint.model={MODEL_ALIAS}",
        "lm.endpoint.api_key_env=null",
        "lm.endpoint.max_concurrency=2",
        "lm.endpoint.progress=false",
        f"teacher.num_candidates={k}",
        "teacher.max_passage_tokens=64",
        "datamodule.batch_size=4",
        "datamodule.val_size=0",
        "optimized_metric=test/gold/recall@5",  # no validation split of 4 questions
        "trainer.max_epochs=1",
        "evaluation.bm25_baseline=false",
        f"paths.cache_dir={run_dir / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher/passages"] == n_train * k and metrics["runtime/teacher_passages_per_s"] > 0
    assert metrics["train/questions"] == n_train
    assert 0 <= metrics["test/gold/recall@5"] <= 1
    assert len(list((run_dir / "cache" / "completions_responses").glob("*/*.json"))) == n_train * k
    assert (run_dir / "retriever").is_dir()
