"""Scaling out: batches dealt out to ranks and gathered back in order, a real 2-process predict, a DDP run.

The 2-process tests run on CPU over gloo, as ``trainer=ddp`` does by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ragdistill.runtime.distributed import is_global_zero, merge_in_order, shard_positions, start_processes
from ragdistill.runtime.predict import run_predict

pytestmark = pytest.mark.pipeline  # end-to-end runs: `make test-fast` leaves them out

# -- (a) the dealing and the merge, as pure functions -------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("total", [0, 1, 2, 5, 7, 8])
def test_every_batch_dealt_out_once_plus_equal_count_padding(total: int, world_size: int) -> None:
    shares = [shard_positions(total, rank, world_size) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # equal counts: no rank waits on another
    assert sorted({p for share in shares for p in share}) == list(range(total))
    assert sum(map(len, shares)) - total < world_size  # at most one repeat per rank
    merged = merge_in_order([[(p, f"out{p}") for p in share] for share in shares], total)
    assert merged == [f"out{p}" for p in range(total)]


def test_merge_drops_padding_repeats_and_restores_loader_order() -> None:
    # 7 batches over 2 ranks as DistributedSampler pads: rank 1 repeats batch 0; each rank's pairs in any order
    rank0 = [(4, "e"), (0, "a"), (2, "c"), (6, "g")]
    rank1 = [(1, "b"), (5, "f"), (3, "d"), (0, "a")]
    assert merge_in_order([rank0, rank1], 7) == list("abcdefg")


def test_merge_fails_on_a_gap_and_on_a_stray_position() -> None:
    with pytest.raises(RuntimeError, match=r"1 of 4 batches have no output \(positions \[2\]"):
        merge_in_order([[(0, "a"), (3, "d")], [(1, "b"), (1, "b")]], 4)
    with pytest.raises(ValueError, match="outside"):
        merge_in_order([[(0, "a"), (4, "e")]], 4)


def test_shard_positions_rejects_bad_ranks() -> None:
    with pytest.raises(ValueError, match="rank"):
        shard_positions(5, 2, 2)
    with pytest.raises(ValueError, match="rank"):
        shard_positions(5, 0, 0)


# -- (b) run_predict over 2 real processes (gloo) equals one process ----------------------------------


class _Affine(pl.LightningModule):
    """A seeded linear map; ``predict_step`` returns (item indices, outputs), as the encoders do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        return batch["rows"], self.linear(batch["x"])


def _item(i: int) -> tuple[int, torch.Tensor]:
    return i, torch.tensor([i, i * i, 1.0]) / 10


def _collate(items: list[tuple[int, torch.Tensor]]) -> dict[str, Any]:
    return {"rows": torch.tensor([i for i, _ in items]), "x": torch.stack([x for _, x in items])}


class _Buckets(Sampler[list[int]]):
    """Precomputed, uneven index batches: the shape of the LM runner's length buckets."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _cases(encoder_dir: str) -> dict[str, Any]:
    """Every predict shape the callers use, run the same way on one process or on each rank of a group."""
    from ragdistill.retriever.bi_encoder_module import BiEncoderModule
    from ragdistill.retriever.encode import EncodeSettings, encode_texts

    module = _Affine()
    items = [_item(i) for i in range(7)]
    buckets = [[6, 5, 4], [3], [2, 1], [0]]

    def predict(loader: DataLoader) -> list[Any]:
        return run_predict(module, loader, "cpu", "32-true", [])

    def prebatched(indices: list[int]) -> dict[str, Any]:
        return _collate([items[i] for i in indices])

    out: dict[str, Any] = {
        "7 items, batch 2": predict(DataLoader(items, batch_size=2, collate_fn=_collate)),
        "7 items, batch 3 (padded)": predict(DataLoader(items, batch_size=3, collate_fn=_collate)),
        "1 item": predict(DataLoader(items[:1], batch_size=2, collate_fn=_collate)),
        "length buckets": predict(DataLoader(items, batch_sampler=_Buckets(buckets), collate_fn=_collate)),
        # batch_size=None: every dataset item is one precomputed batch (the reader's generation loader)
        "prebatched": predict(DataLoader(buckets, batch_size=None, collate_fn=prebatched)),  # type: ignore[arg-type]
        "this rank alone": run_predict(
            module, DataLoader(items, batch_size=2, collate_fn=_collate), "cpu", "32-true", [], distributed=False
        ),
    }
    texts = ["a question", "Normandy", "the Normans were in France", "x", "a longer passage of text here", "b", "c"]
    settings = EncodeSettings(batch_size=2, accelerator="cpu", precision="32-true", progress=False)
    out["encode_texts"] = torch.from_numpy(encode_texts(BiEncoderModule(path=encoder_dir), texts, "passage", settings))
    return out


def _main(out_dir: Path, encoder_dir: str) -> None:
    """``python tests/test_ddp.py OUT_DIR ENCODER_DIR``: Lightning starts a second rank; both run every case.

    The way the pipeline starts its ranks (:func:`start_processes` on a ``trainer=ddp`` Trainer): Lightning
    runs this command again with ``LOCAL_RANK=1`` and both processes join a gloo group.
    """
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo"), logger=False)
    assert start_processes(trainer)
    rank = dist.get_rank()
    results = _cases(encoder_dir)
    results["global zero"] = is_global_zero()
    items = [_item(i) for i in range(7 if rank == 0 else 6)]  # the ranks disagree: both must fail, not hang
    try:
        run_predict(_Affine(), DataLoader(items, batch_size=2, collate_fn=_collate), "cpu", "32-true", [])
    except RuntimeError as err:
        results["different loaders"] = str(err)
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.barrier()  # rank 0 (the caller's process) ends only once rank 1 has saved too


def _assert_same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, torch.Tensor):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=where)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), f"{where}: {len(got)} outputs, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def test_two_gloo_processes_predict_exactly_what_one_does(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    want = _cases(str(tiny_encoder_dir))  # one process, no group
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, __file__, str(tmp_path), str(tiny_encoder_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    for rank, got in enumerate(ranks):
        for case, expected in want.items():
            _assert_same(got[case], expected, f"rank {rank}, {case}")
        assert "hold different batches" in got["different loaders"]
    assert [got["global zero"] for got in ranks] == [True, False]
    rows = torch.cat([batch_rows for batch_rows, _ in ranks[1]["7 items, batch 3 (padded)"]])
    assert rows.tolist() == list(range(7))  # rank 1 repeated batch 2 for padding: no duplicate, no gap


# -- (c) a real `ragdistill-train ... trainer=ddp` run ------------------------------------------------


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path) -> tuple[Path, str]:
    """A 2-process CPU DDP run of the fixture smoke experiment with a tiny encoder and a tiny LM teacher."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir = root / "run"
    overrides = [
        "data=fixture",
        "experiment=fixture_smoke",
        "trainer=ddp",
        "callbacks=checkpoints",  # rank 0 alone writes the checkpoint
        f"retriever.path={tiny_encoder_dir}",
        "teacher=lm_likelihood",
        "lm=hf",
        f"lm.path={tiny_lm_dir}",
        "teacher.num_candidates=4",
        "teacher.max_passage_tokens=48",
        "teacher.precision=32-true",
        "datamodule.group_size=null",
        "loss=kl",
        f"paths.cache_dir={root / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    train = Path(sys.executable).parent / "ragdistill-train"
    done = subprocess.run([str(train), *overrides], capture_output=True, text=True, cwd=root, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir, (run_dir / "train_ddp_process_1.log").read_text()


@pytest.mark.slow
def test_ddp_run_trains_on_two_ranks_and_writes_its_metrics(ddp_run: tuple[Path, str]) -> None:
    run_dir, rank1_log = ddp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test/gold/recall@5"] <= 1 and metrics["train/questions"] > 0
    assert "Stage <fit> took" in rank1_log  # rank 1 trained
    # and encoded its share of the corpus: 211 passages in 3 token-budget batches, 2 per rank (one a padding repeat)
    assert "Encoding 211 passage texts in 3 batches" in rank1_log
    assert "Rank 1 predicted 2 of 3 batches" in rank1_log
    assert (run_dir / "retriever" / "modules.json").exists() and (run_dir / "index" / "index.faiss").exists()


@pytest.mark.slow
def test_ranks_start_before_the_teacher_and_split_its_lm_passes(ddp_run: tuple[Path, str]) -> None:
    run_dir, rank1_log = ddp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    before_fit = rank1_log.split("Stage <fit> started", 1)[0]
    assert "LM likelihood (answer)" in before_fit and "Rank 1 predicted" in before_fit  # rank 1 scored its share
    assert metrics["teacher/cache_shards_scored"] == metrics["teacher/cache_shards_total"] > 0
    assert metrics["teacher/passages"] > 0 and 0 <= metrics["teacher/top1_gold"] <= 1
    shards = list((run_dir.parent / "cache" / "teacher_signals").glob("*/*.json"))
    assert len([s for s in shards if s.name != "info.json"]) == metrics["teacher/cache_shards_total"]


@pytest.mark.slow
def test_only_rank_zero_writes_the_run_outputs(ddp_run: tuple[Path, str]) -> None:
    run_dir, rank1_log = ddp_run
    info = json.loads((run_dir / "run_info.json").read_text())
    assert not any("train_ddp_process" in arg for arg in info["command"])  # rank 1's command line differs
    for line in ("Exported retriever", "Saved FaissIndex", "Wrote recall@k plot"):
        assert line not in rank1_log
    assert len(list((run_dir / "checkpoints").glob("*.ckpt"))) == 1


@pytest.mark.slow
def test_only_rank_zero_writes_metrics_json(ddp_run: tuple[Path, str]) -> None:
    _, rank1_log = ddp_run
    assert "metrics.json" not in rank1_log


if __name__ == "__main__":
    _main(Path(sys.argv[1]), sys.argv[2])
