"""What the teacher benchmarks share: SQuAD-open training questions with BM25 candidates, and the packaged LM."""

from __future__ import annotations

from pathlib import Path

import torch

from ragdistill.candidates.base import RankedList
from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.schemas import RetrievalData
from ragdistill.data.squad import load_squad_open
from ragdistill.models.lm import LanguageModel
from ragdistill.utils.quiet import quiet_third_party

ROOT = Path(__file__).resolve().parents[1]


def squad_slice(questions: int, k: int) -> tuple[RetrievalData, dict[str, RankedList]]:
    """``questions`` SQuAD training questions over a 5,000-paragraph slice holding every gold paragraph,
    each with its BM25 top-``k``; quiet logs and a fixed torch seed."""
    quiet_third_party()
    torch.manual_seed(0)
    data = load_squad_open(n_train=questions, n_eval=0, corpus_size=5000)
    return data, BM25Candidates(k=k).fit(data.corpus).retrieve(data.train)


def packaged_lm() -> LanguageModel:
    """The packaged SmolLM2-135M-Instruct, converted once into the repository's cache."""
    return LanguageModel(cache_dir=str(ROOT / ".cache" / "ragdistill"))
