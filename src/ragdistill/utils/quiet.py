"""Keep the console for our own progress bars and log lines: silence third-party chatter."""

from __future__ import annotations

import logging
import os
import warnings

NOISY_LOGGERS = (
    "bm25s",
    "faiss.loader",  # logs each CPU-feature build it tries, as INFO, on import
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric",
    "pytorch_lightning.accelerators",
)


def quiet_third_party() -> None:
    """Turn off transformers' per-file progress bars and noisy info lines, Lightning's tips and known warnings.

    Levels are set before anything heavy is imported, since some libraries log while being imported.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # one line per metric name with '@' (recall@5 -> recall5), at every log call; conf/logger/mlflow.yaml says so
    warnings.filterwarnings("ignore", message="MLFlow only allows")
    # resuming mid-epoch (runtime/resume.py): the data module restores the epoch and skips the trained batches,
    # which Lightning cannot see since the position lives in the data module, not in a stateful loader
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
