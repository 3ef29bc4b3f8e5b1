"""What the benchmarks share: SQuAD-open training questions with BM25 candidates, the packaged LM, and the
measuring tools (a wall-clock and peak-memory block, a fresh process per measured setting)."""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import RetrievalData
from ragdistill.data.squad import load_squad_open
from ragdistill.models.lm import LanguageModel
from ragdistill.models.lm_inputs import LMExample
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.quiet import quiet_third_party

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def publish(report: str, out: str | Path) -> Path:
    """Write ``report`` to ``out`` (a file name under ``benchmarks/results/``, or a path) and print it.

    The file is written whole or not at all (a benchmark killed while writing keeps the previous results)
    and ends in one newline.
    """
    path = out if isinstance(out, Path) else RESULTS / out
    atomic_write_text(path, report.rstrip("\n") + "\n")
    print(report)
    return path


def squad_slice(questions: int, k: int) -> tuple[RetrievalData, dict[str, RankedList]]:
    """``questions`` SQuAD training questions over a 5,000-paragraph slice holding every gold paragraph,
    each with its BM25 top-``k``; quiet logs and a fixed torch seed."""
    quiet_third_party()
    torch.manual_seed(0)
    data = load_squad_open(n_train=questions, n_eval=0, corpus_size=5000)
    return data, BM25Candidates(k=k).fit(data.corpus).retrieve(data.train)


def load_lm(path: str | None = None) -> LanguageModel:
    """The packaged SmolLM2-135M-Instruct (converted once into the repository's cache), or the LM at ``path``
    (a transformers folder such as a ``ragdistill-finetune-reader`` result, or a hub id)."""
    cache_dir = str(ROOT / ".cache" / "ragdistill")
    return LanguageModel(cache_dir=cache_dir) if path is None else LanguageModel(path=path, cache_dir=cache_dir)


def pair_examples(lm: LanguageModel, questions, candidates, data, k: int) -> Iterator[tuple[str, LMExample]]:
    """(question id, prompt) of every (passage, question, answer) pair the likelihood scorers read; each
    prompt's ``key`` is ``(question id, passage id)``."""
    builder = LMLikelihoodTeacher(lm, num_candidates=k).builder()
    for q in questions:
        for pid in candidates[q.id].ids[:k]:
            yield q.id, builder.build((q.id, pid), [data.passage(pid)], q.text, q.answers[0])


def shown_path(path: str) -> str:
    """``path`` as a report shows it: relative to the repository when inside it (a cached reader folder), so a
    result file names no machine's checkout; a hub id or an outside folder unchanged."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if Path(path).exists() and resolved.is_relative_to(ROOT) else path


@dataclass
class Footprint:
    """Wall time and resident memory of one measured block, filled in when the block ends.

    Attributes:
        seconds: Wall-clock time of the block.
        rss_before_mb: Resident memory when the block started (model, data, Python already loaded).
        peak_mb: Highest resident memory while the block ran; since the process started when the peak
            counter could not be reset (``block_peak`` False).
        block_peak: Whether ``peak_mb`` belongs to the block alone.
    """

    seconds: float = 0.0
    rss_before_mb: float = 0.0
    peak_mb: float = 0.0
    block_peak: bool = False

    @property
    def growth_mb(self) -> float:
        """Memory the block added at its peak over what was resident before it."""
        return self.peak_mb - self.rss_before_mb


def _proc_status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB, or None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    now = _proc_status_mb("VmRSS")
    return now if now is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Highest resident memory of this process since it started or since :func:`reset_peak_rss`, in MB.

    ``ru_maxrss`` cannot be reset, so the Linux high-water mark ``VmHWM`` is read where there is one.
    """
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Restart the peak-RSS counter (Linux ``clear_refs`` 5), so that a later peak is one block's alone.

    tracemalloc misses torch's allocations, and a peak since process start would include loading; this
    keeps each measured block's own peak. Returns False where the kernel does not allow it.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextmanager
def footprint() -> Iterator[Footprint]:
    """Measure the wall time and the peak resident memory of the ``with`` block.

    Example::

        with footprint() as used:
            teacher.score(questions, candidates, data)
        print(used.seconds, used.growth_mb)
    """
    gc.collect()
    block_peak = reset_peak_rss()
    used = Footprint(rss_before_mb=rss_mb(), block_peak=block_peak)
    start = time.perf_counter()
    try:
        yield used
    finally:
        used.seconds = time.perf_counter() - start
        used.peak_mb = peak_rss_mb()


def run_child(script: str | Path, args: list[str]) -> dict[str, Any]:
    """Run ``python script *args`` in a fresh process and return the JSON object on its last stdout line.

    One setting per process: its memory peak is its own, and nothing the previous setting allocated (or
    left in torch's caches) is counted or reused. The child's stderr passes through, so failures show.
    """
    done = subprocess.run(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=None, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
