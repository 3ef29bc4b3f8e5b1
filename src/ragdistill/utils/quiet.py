"""Keep the console for our own progress bars and log lines: silence third-party chatter."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_third_party() -> None:
    """Turn off transformers' per-file progress bars and noisy info lines, Lightning's tips and known warnings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in (
        "bm25s",
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric",
        "pytorch_lightning.accelerators",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
