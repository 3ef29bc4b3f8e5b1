"""Answer-likelihood teacher scoring on each CPU engine, side by side in one run: speed and agreement.

    python benchmarks/teacher_engines.py                     # 24 SQuAD-open questions x K=10

The same prompts (the likelihood teacher's own token ids, chat template included) go to:

- **PyTorch fp32**: our teacher in float32, the reference every other row is compared with;
- **PyTorch bf16**: our teacher under bf16 autocast, today's default;
- **llama.cpp in-process** (``llama-cpp-python``): the packaged GGUF as shipped (Q4_1, no conversion),
  evaluated on the token ids with the shared chat prefix kept in its KV cache, log-softmax on the answer
  positions only;
- **llama.cpp servers through ``lm=api``**: our teacher with a
  :class:`~ragdistill.models.served_lm.ServedLanguageModel`, against 1, 2 and 4 local llama.cpp servers (the
  same GGUF; several behind a round-robin proxy, as replicas behind one URL) with 1, 2 and 4 requests in
  flight. An echoed prompt costs the server seconds (llama-cpp-python computes each echoed log-probability
  in Python), so these rows score the first ``--server-questions`` questions; their agreement is over those.

Columns: passages/s, the ratio to bf16, top-1 agreement and the mean per-question Spearman with fp32.
Writes ``benchmarks/results/teacher_engines.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from environment import measured_on
from scipy.stats import spearmanr
from teacher_setup import ROOT, load_lm, pair_examples, publish, squad_slice

from ragdistill.data.schemas import Question
from ragdistill.models.completions_api import CompletionsClient
from ragdistill.models.lm_inputs import LMExample
from ragdistill.models.packaged_lms import PACKAGED_LMS
from ragdistill.models.served_lm import ServedLanguageModel
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

sys.path.insert(0, str(ROOT / "tests"))
from http_fakes import send_json
from llm_server import MODEL_ALIAS, llama_server  # (the tests' real llama.cpp server, reused)

Key = tuple[str, str]
"""(question id, passage id)."""


def teacher_scores(teacher: LMLikelihoodTeacher, questions: list[Question], candidates, data) -> dict[Key, float]:
    signals = teacher.score(questions, candidates, data)
    return {(s.qid, pid): float(v) for s in signals for pid, v in zip(s.candidate_ids, s.scores, strict=True)}


def llama_cpp_scores(gguf: Path, examples: dict[Key, LMExample], threads: int) -> dict[Key, float]:
    """Sum of the answer tokens' log-probabilities from llama.cpp in-process, reusing the shared prefix."""
    from llama_cpp import Llama

    longest = max(ex.length for ex in examples.values())
    llm = Llama(model_path=str(gguf), n_ctx=longest + 8, logits_all=True, n_threads=threads, verbose=False)
    scores: dict[Key, float] = {}
    previous: list[int] = []
    for key, ex in examples.items():
        ids = ex.context_ids + ex.target_ids
        shared = 0
        while shared < min(len(ids), len(previous)) - 1 and ids[shared] == previous[shared]:
            shared += 1
        llm.n_tokens = shared  # eval drops the KV cache from here on
        llm.eval(ids[shared:])
        logits = np.asarray(llm.scores[len(ex.context_ids) - 1 : len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        scores[key] = float(log_probs[np.arange(len(ex.target_ids)), ex.target_ids].sum())
        previous = ids
    return scores


@contextlib.contextmanager
def round_robin(upstreams: list[str]) -> Iterator[str]:
    """One base URL in front of ``upstreams`` (replicas), each POST going to the next (what nginx would do)."""
    turn = itertools.cycle(upstreams)
    lock = threading.Lock()
    client = httpx.Client(timeout=600)

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with lock:
                upstream = next(turn)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            answer = client.post(upstream + self.path.removeprefix("/v1"), content=body, headers=headers)
            send_json(self, answer.status_code, answer.content)

        def do_GET(self) -> None:
            answer = client.get(upstreams[0] + self.path.removeprefix("/v1"))
            send_json(self, answer.status_code, answer.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        client.close()


@contextlib.contextmanager
def llama_servers(count: int, threads: int, log_dir: Path) -> Iterator[str]:
    """``count`` llama.cpp servers with ``threads`` threads each, behind one URL."""
    os.environ["N_THREADS"] = str(threads)  # llama-cpp-python's server reads its settings from the environment
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(llama_server(log_dir / f"server{i}.log")) for i in range(count)]
        yield urls[0] if count == 1 else stack.enter_context(round_robin(urls))


def agreement(scores: dict[Key, float], reference: dict[Key, float], questions: list[Question]) -> tuple[float, float]:
    """(top-1 agreement, mean Spearman) with ``reference`` over the questions ``scores`` holds."""
    top1, rhos = [], []
    for q in questions:
        keys = [key for key in reference if key[0] == q.id]
        if not keys or any(key not in scores or np.isnan(scores[key]) for key in keys):
            continue
        ours, theirs = np.array([scores[k] for k in keys]), np.array([reference[k] for k in keys])
        top1.append(float(ours.argmax() == theirs.argmax()))
        rhos.append(float(spearmanr(ours, theirs).statistic))
    return float(np.mean(top1)), float(np.mean(rhos))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--server-questions", type=int, default=1)
    parser.add_argument("--out", default="teacher_engines.md")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    data, candidates = squad_slice(args.questions, args.k)
    questions = data.train
    lm = load_lm()
    rows: list[tuple[str, int, float, dict[Key, float]]] = []  # (engine, passages, seconds, scores)

    for name, precision in (("PyTorch fp32 (reference)", "32-true"), ("PyTorch bf16 (default)", "bf16-mixed")):
        teacher = LMLikelihoodTeacher(lm, num_candidates=args.k, precision=precision)
        start = time.perf_counter()
        scores = teacher_scores(teacher, questions, candidates, data)
        rows.append((name, len(scores), time.perf_counter() - start, scores))

    examples = {ex.key: ex for _, ex in pair_examples(lm, questions, candidates, data, args.k)}
    gguf = PACKAGED_LMS["SmolLM2-135M-Instruct"].gguf(ROOT / ".cache")
    start = time.perf_counter()
    scores = llama_cpp_scores(gguf, examples, threads)
    rows.append(
        (f"llama.cpp in-process (GGUF Q4_1, {threads} threads)", len(scores), time.perf_counter() - start, scores)
    )

    asked = questions[: args.server_questions]
    # (servers, threads each, requests in flight): one server with every core, then replicas of one thread
    settings = [(1, threads, 1), (1, threads, 2), (1, threads, 4), (2, 1, 2), (4, 1, 4)]
    for count, each, in_flight in settings:
        with llama_servers(count, each, ROOT / "outputs" / "teacher_engines") as url:
            endpoint = CompletionsClient(url, MODEL_ALIAS, api_key_env=None, max_concurrency=in_flight, progress=False)
            served_lm = ServedLanguageModel(endpoint, cache_dir=str(ROOT / ".cache" / "ragdistill"))
            teacher = LMLikelihoodTeacher(served_lm, num_candidates=args.k)
            start = time.perf_counter()
            scores = teacher_scores(teacher, asked, candidates, data)
            seconds = time.perf_counter() - start
        name = f"lm=api: {count} llama.cpp server{'s' if count > 1 else ''} × {each} thread{'s' if each > 1 else ''}"
        rows.append((f"{name}, {in_flight} in flight", len(scores), seconds, scores))
        print(f"{rows[-1][0]}: {len(scores) / seconds:.3f} passages/s", flush=True)

    reference, bf16_rate = rows[0][3], rows[1][1] / rows[1][2]
    lines = [
        "# Answer-likelihood scoring on each engine",
        "",
        f"Measured {measured_on()}: `python benchmarks/teacher_engines.py --questions {args.questions} --k {args.k} "
        f"--server-questions {args.server_questions}`. "
        f"{args.questions} SQuAD-open training questions x their BM25 top-{args.k}, SmolLM2-135M-Instruct, "
        "the likelihood teacher's prompts (chat template). The `lm=api` rows score the first "
        f"{args.server_questions} questions through llama.cpp servers (llama-cpp-python) on the same machine, "
        "so server and client share its cores.",
        "",
        "| engine | passages | passages/s | × bf16 | top-1 agreement with fp32 | Spearman with fp32 (mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, passages, seconds, scores in rows:
        top1, rho = agreement(scores, reference, questions)
        rate = passages / seconds
        lines.append(f"| {name} | {passages} | {rate:.2f} | {rate / bf16_rate:.2f} | {top1:.3f} | {rho:.3f} |")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
