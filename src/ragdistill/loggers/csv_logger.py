"""Lightning's CSV logger, made to continue a ``metrics.csv`` that another copy of it began (``trainer=ddp_spawn``)."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.utilities import rank_zero_only


class CSVLogger(LightningCSVLogger):
    """Metrics as CSV in the run dir; keeps the columns already in ``metrics.csv`` when it adds rows.

    Under ``trainer=ddp_spawn`` the spawned rank 0 logs the fit with its own copy of the logger; back in
    the main process, the original copy logs the final metrics and, seeing new columns, rewrites the file
    with the columns *it* logged only. Lightning's logger then fails ("dict contains fields not in
    fieldnames") after truncating the file, losing the fit's rows. This one reads the header first.
    Otherwise it is Lightning's ``CSVLogger`` (same arguments, same file).
    """

    @rank_zero_only
    def save(self) -> None:
        """Write pending rows, with every column of the existing file among the header's columns."""
        writer = self.experiment
        path = Path(writer.metrics_file_path)
        if writer.metrics and path.is_file():
            with path.open(newline="") as file:
                header = next(csv.reader(file), [])
            writer.metrics_keys = sorted(set(writer.metrics_keys) | set(header))
        super().save()
