"""Dashboards filled from the config alone: a tiny real run per dashboard, read back from what it wrote.

W&B runs offline: its run folder's ``.wandb`` file (the records ``wandb sync`` uploads) is read for the
group, tags, flat config and artifacts. MLflow is read back from its SQLite store with its own client;
those tests need the optional ``mlflow`` package and fail without it (``-m "not mlflow"`` deselects them).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragdistill.loggers.dashboards import build_loggers
from ragdistill.loggers.run_labels import flat_config
from ragdistill.pipeline import train

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

# 2 training steps with the tiny encoder; evaluation without the BM25 baseline
FAST = ["experiment=fixture_smoke", "trainer.max_epochs=1", "+trainer.max_steps=2", "evaluation.bm25_baseline=false"]


def tiny_run(compose_at: Any, run_dir: Path, encoder: Path, overrides: list[str]) -> dict[str, Any]:
    cfg = compose_at("config", [*FAST, f"retriever.path={encoder}", *overrides], run_dir)
    expected_config = flat_config(cfg)
    metrics, _ = train(cfg)
    return {"run_dir": run_dir, "metrics": metrics, "config": expected_config, "encoder": encoder}


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, compose_at, tiny_encoder_dir) -> Iterator[dict[str, Any]]:
    """``logger=many`` (CSV, TensorBoard, W&B offline) on the fixture; W&B's staging dir kept in tmp."""
    import wandb

    root = tmp_path_factory.mktemp("dashboards")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("WANDB_DATA_DIR", str(root / "wandb_data"))  # offline artifacts are staged here until synced
        patch.setenv("WANDB_CACHE_DIR", str(root / "wandb_cache"))
        run = tiny_run(compose_at, root / "run", tiny_encoder_dir, ["logger=many"])
        wandb.finish()  # the CLI's task wrapper does this
        # finish() can return before W&B's service process has written the run's .wandb file to its end (CI
        # once read it with no run record); teardown waits for the service to exit, as the CLI's exit does
        wandb.teardown()
        yield run


def wandb_records(run_dir: Path) -> list[Any]:
    """The protobuf records of the run's ``.wandb`` file (W&B's LevelDB-style log: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, header = 32768, struct.Struct("<IHB")  # chunk header: crc32, length, kind (1 full, 2 first, 3 mid, 4 last)
    records, pending, pos = [], b"", 7  # the file header (ident, magic, version) takes 7 bytes
    while pos + header.size <= len(data):
        left = block - pos % block
        if left < header.size:  # block trailer padding
            pos += left
            continue
        _, length, kind = header.unpack_from(data, pos)
        pos += header.size
        if kind == 0:  # zero padding to the end of the block
            pos += left - header.size
            continue
        pending += data[pos : pos + length]
        pos += length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    assert records and records[-1].WhichOneof("record_type") == "exit", f"{path} is not a finished run's log"
    return records


def of_type(records: list[Any], kind: str) -> list[Any]:
    return [getattr(record, kind) for record in records if record.WhichOneof("record_type") == kind]


def test_wandb_run_is_grouped_and_tagged_from_the_config(wandb_run):
    (run,) = of_type(wandb_records(wandb_run["run_dir"]), "run")
    assert run.run_group == "fixture_smoke" and run.job_type == "train"
    backbone = f"backbone={wandb_run['encoder'].name}"
    expected = ["smoke", "experiment=fixture_smoke", "teacher=gold", "loss=infonce", "data=fixture", backbone]
    assert list(run.tags) == expected


def test_wandb_config_is_the_flat_config(wandb_run):
    updates = [item for config in of_type(wandb_records(wandb_run["run_dir"]), "config") for item in config.update]
    logged = {item.key: json.loads(item.value_json) for item in updates if item.key != "_wandb"}
    assert logged == json.loads(json.dumps(wandb_run["config"]))  # nothing else: no unprefixed module hparams
    assert logged["teacher._target_"] == "ragdistill.teachers.gold.GoldTeacher"
    assert logged["loss.temperature"] == 0.05 and logged["retriever.path"] == str(wandb_run["encoder"])


def test_wandb_logs_the_retriever_and_metrics_as_artifacts(wandb_run):
    run_dir = wandb_run["run_dir"]
    records = wandb_records(run_dir)
    (run,) = of_type(records, "run")
    artifacts = {artifact.name: artifact for artifact in of_type(records, "artifact")}
    assert set(artifacts) == {f"retriever-{run.run_id}", f"metrics-{run.run_id}"}

    model = artifacts[f"retriever-{run.run_id}"]
    assert model.type == "model"
    assert json.loads(model.metadata)["train/questions"] == wandb_run["metrics"]["train/questions"]
    files = {entry.path: Path(entry.local_path) for entry in model.manifest.contents}
    exported = [path for path in (run_dir / "retriever").rglob("*") if path.is_file()]
    assert set(files) == {str(path.relative_to(run_dir / "retriever")) for path in exported}
    assert files["model.safetensors"].read_bytes() == (run_dir / "retriever/model.safetensors").read_bytes()

    figures = artifacts[f"metrics-{run.run_id}"]
    (entry,) = figures.manifest.contents
    assert figures.type == "metrics" and entry.path == "metrics.json"
    assert json.loads(Path(entry.local_path).read_text()) == pytest.approx(wandb_run["metrics"])


def test_csv_and_tensorboard_get_the_same_flat_config(wandb_run):
    run_dir, expected = wandb_run["run_dir"], wandb_run["config"]
    for name in ("csv", "tensorboard"):
        assert yaml.safe_load((run_dir / name / "hparams.yaml").read_text()) == expected, name


def test_tensorboard_hparams_pair_the_config_with_the_final_metrics(wandb_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(wandb_run["run_dir"] / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert {info.name.tag for info in experiment.metric_infos} == set(wandb_run["metrics"])
    assert set(session.hparams) == set(wandb_run["config"])
    assert session.hparams["loss.temperature"].number_value == 0.05
    assert session.hparams["teacher._target_"].string_value == "ragdistill.teachers.gold.GoldTeacher"
    assert events.Scalars("test/gold/recall@5")[-1].value == pytest.approx(wandb_run["metrics"]["test/gold/recall@5"])


@pytest.mark.mlflow
def test_mlflow_run_reads_back_from_its_sqlite_store(tmp_path, compose_at, tiny_encoder_dir, monkeypatch):
    from mlflow.tracking import MlflowClient  # the optional extra: missing, this test fails here

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tiny_run(compose_at, tmp_path / "run", tiny_encoder_dir, ["logger=mlflow", "evaluate=false"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fixture_smoke")
    (logged,) = client.search_runs([experiment.experiment_id])

    # Lightning's MLflow logger stringifies values (at most 250 characters) and drops empty mappings
    expected = {key: str(value)[:250] for key, value in run["config"].items() if value != {}}
    assert logged.data.params == expected
    assert logged.data.params["loss.temperature"] == "0.05"
    tags = logged.data.tags
    assert tags["mlflow.runName"] == "fixture_smoke" and tags["group"] == "fixture_smoke"
    assert (tags["job_type"], tags["teacher"], tags["loss"], tags["data"]) == ("train", "gold", "infonce", "fixture")
    assert tags["backbone"] == tiny_encoder_dir.name and tags["tags"] == "smoke"
    for key, value in run["metrics"].items():  # MLflow allows no '@' in metric names: recall@5 -> recall5
        assert logged.data.metrics[key.replace("@", "")] == pytest.approx(value, nan_ok=True), key

    run_id = logged.info.run_id
    assert {item.path for item in client.list_artifacts(run_id)} == {"metrics.json", "retriever"}
    exported = {item.path for item in client.list_artifacts(run_id, "retriever")}
    assert {"retriever/model.safetensors", "retriever/modules.json"} <= exported


def test_logger_mlflow_without_mlflow_says_how_to_install_it(compose_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    cfg = compose_cfg("config", ["logger=mlflow"])
    with pytest.raises(ModuleNotFoundError, match=r"logger=mlflow needs the mlflow package.*ragdistill\[mlflow\]"):
        build_loggers(cfg)
