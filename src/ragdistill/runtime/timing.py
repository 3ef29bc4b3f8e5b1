"""Wall time per pipeline stage and peak memory, reported as ``runtime/*`` metrics."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ``ru_maxrss`` in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageTimer:
    """Time named stages: ``with timer("fit"): ...`` then ``timer.metrics()``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the body and log the stage's duration."""
        start = time.perf_counter()
        logger.info("Stage <%s> started", stage)
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            logger.info("Stage <%s> took %.1f s (peak RSS so far %.0f MB)", stage, self.seconds[stage], peak_rss_mb())

    def metrics(self) -> dict[str, float]:
        """``runtime/<stage>_s`` per stage, the total, and ``runtime/peak_rss_mb`` of this process."""
        out = {f"runtime/{stage}_s": round(s, 2) for stage, s in self.seconds.items()}
        out["runtime/total_s"] = round(sum(self.seconds.values()), 2)
        out["runtime/peak_rss_mb"] = round(peak_rss_mb(), 1)
        return out
