"""A question's ranked passages, the currency between candidate generators, retrievers, teachers and metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RankedList:
    """One question's ranked passages: ``ids[i]`` scored ``scores[i]``, best first."""

    ids: list[str]
    scores: np.ndarray  # [k]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise ValueError(f"ranked list has {len(self.ids)} ids but {len(self.scores)} scores")


def as_run(ranked: dict[str, RankedList]) -> dict[str, dict[str, float]]:
    """Convert ranked lists to the ``qid -> pid -> score`` run the IR metrics library takes."""
    return {qid: dict(zip(r.ids, map(float, r.scores), strict=True)) for qid, r in ranked.items()}
