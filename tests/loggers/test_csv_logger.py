import csv
import pickle

from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger

from ragdistill.loggers.csv_logger import CSVLogger


def test_keeps_the_rows_and_columns_a_spawned_copy_wrote(tmp_path):
    main = CSVLogger(tmp_path, name="csv", version="")
    main.log_hyperparams({"lr": 0.1})  # the main process creates the writer before fit, as the pipeline does
    spawned = pickle.loads(pickle.dumps(main))  # what ddp_spawn's rank 0 logs the fit with
    spawned.log_metrics({"val/loss": 1.0, "epoch": 0}, step=3)
    spawned.save()

    main.log_metrics({"test/recall@5": 0.5}, step=5)
    main.finalize("success")

    with (tmp_path / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["step"] for row in rows] == ["3", "5"]
    assert rows[0]["val/loss"] == "1.0" and rows[1]["test/recall@5"] == "0.5"


def test_is_a_lightning_csv_logger():
    assert issubclass(CSVLogger, LightningCSVLogger)
