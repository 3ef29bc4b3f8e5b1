"""The bi-encoder retriever as a LightningModule: fit learns from teacher signals, predict encodes texts."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from ragdistill.models.locate import resolve_model_path
from ragdistill.retriever.in_batch import layout_scores
from ragdistill.retriever.pooling import POOLING_MODES, PoolingMode, pool
from ragdistill.retriever.rank_agreement import own_group_scores, teacher_student_spearman
from ragdistill.utils.manifest import MANIFEST_FILE, CorruptArtifactError, artifact_problem

logger = logging.getLogger(__name__)

SETTINGS_FILE = "ragdistill.json"
"""Written beside an exported retriever: the settings a sentence-transformers folder cannot hold."""


ARCHITECTURE_KEYS = ("shared_towers", "pooling", "normalize", "query_prefix", "passage_prefix")
"""Settings that define how an exported retriever encodes: read back from its folder, never overridden."""


def saved_settings(path: str) -> dict[str, Any]:
    """The settings an exported retriever folder was trained with (empty for any other model)."""
    file = Path(path) / SETTINGS_FILE
    if not file.exists():
        return {}
    try:
        settings = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not valid JSON ({error}); re-export the retriever") from None
    return {key: settings[key] for key in ARCHITECTURE_KEYS if key in settings}


class BiEncoderModule(pl.LightningModule):
    """Encode queries and passages into one vector each; score = dot product (the losses apply temperatures).

    Args:
        path: ``packaged:all-MiniLM-L6-v2``, a hub id, or a local folder (e.g. a retriever exported by
            an earlier run).
        shared_towers: One encoder for queries and passages (DPR uses two; with little data one shared
            tower generalises better).
        pooling: ``mean`` or ``cls``.
        normalize: L2-normalise vectors (cosine similarity); the packaged MiniLM was trained so.
        query_max_length: Token limit for questions.
        passage_max_length: Token limit for passages (MiniLM was trained with 256).
        in_batch_negatives: Score every question against every passage of the batch.
        query_prefix: Text put before each question (e5-style ``query: `` for backbones that expect it).
        passage_prefix: Text put before each passage.
        optimizer: Factory ``params -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: Factory ``(optimizer, total_steps) -> LR scheduler``, stepped every batch, or ``None``.
        loss: Module with ``forward(student_scores, teacher_scores, mask, positive_mask)``.
        cache_dir: Where packaged multi-part models are assembled.
        trust_remote_code: Let ``from_pretrained`` run Python code shipped with a hub model (needed by a few
            custom architectures); off by default because that code runs with the user's rights.
        gradient_checkpointing: Recompute each layer's activations in the backward pass instead of keeping
            them: the same gradients for much less memory and a slower step (docs/performance.md has both).
    """

    def __init__(
        self,
        path: str = "packaged:all-MiniLM-L6-v2",
        shared_towers: bool = True,
        pooling: PoolingMode = "mean",
        normalize: bool = True,
        query_max_length: int = 64,
        passage_max_length: int = 256,
        in_batch_negatives: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        loss: nn.Module | None = None,
        cache_dir: str = ".cache/ragdistill",
        trust_remote_code: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        # logger=False: the run logs its whole config flat (loggers/dashboards.py), where these are retriever.*
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "loss"], logger=False)
        resolved = resolve_model_path(path, cache_dir)
        _check_export(Path(resolved))
        saved = saved_settings(resolved)
        changed = {key: value for key, value in saved.items() if self.hparams[key] != value}
        if changed:
            logger.warning("Using the settings %s was exported with, not the config's: %s", resolved, changed)
            self.hparams.update(changed)
        if self.hparams["pooling"] not in POOLING_MODES:
            raise ValueError(f"retriever.pooling must be one of {POOLING_MODES}, got {self.hparams['pooling']!r}")
        shared_towers = self.hparams["shared_towers"]
        two_tower_export = bool(saved) and not shared_towers
        query_path = str(Path(resolved) / "query") if two_tower_export else resolved
        passage_path = str(Path(resolved) / "passage") if two_tower_export else resolved
        remote = self.hparams["trust_remote_code"]
        if remote:
            logger.warning("Running the Python code shipped with <%s> (retriever.trust_remote_code=true)", resolved)
        self.tokenizer = AutoTokenizer.from_pretrained(passage_path, trust_remote_code=remote)
        self.passage_encoder: PreTrainedModel = AutoModel.from_pretrained(passage_path, trust_remote_code=remote)
        self.query_encoder: PreTrainedModel = (
            self.passage_encoder if shared_towers else AutoModel.from_pretrained(query_path, trust_remote_code=remote)
        )
        logger.info("Loaded retriever backbone <%s> (%s towers)", resolved, "shared" if shared_towers else "separate")
        if gradient_checkpointing:
            for tower in {id(t): t for t in (self.passage_encoder, self.query_encoder)}.values():
                # non-reentrant (the default): restores the RNG, so dropout masks and gradients match a plain step
                tower.activation_checkpointing_enable()
        self.train()  # from_pretrained returns eval mode; fine-tuning wants dropout on (Lightning keeps modes)
        self._eager_for_training: set[int] = set()  # towers switched to eager attention for training
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss = loss

    # -- encoding -------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], kind: str) -> Any:
        """Padded ``pt`` tokens of ``texts`` for the ``kind`` tower (``query`` or ``passage``): its prefix, its cut.

        What every encoding path feeds a tower, PyTorch here or an exported tower on another engine.
        """
        prefix, limit = self.hparams[f"{kind}_prefix"], self.hparams[f"{kind}_max_length"]
        return self.tokenizer(
            [prefix + t for t in texts], padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )

    def _encode(self, encoder: PreTrainedModel, texts: list[str], kind: str) -> Tensor:
        tokens = self.tokenize(texts, kind).to(self.device)
        hidden = encoder(**tokens).last_hidden_state  # [B, T, D]
        return pool(hidden, tokens["attention_mask"], self.hparams["pooling"], self.hparams["normalize"])

    def encode_queries(self, texts: list[str]) -> Tensor:
        """``[B, D]`` float32 question vectors."""
        return self._encode(self.query_encoder, texts, "query")

    def encode_passages(self, texts: list[str]) -> Tensor:
        """``[B, D]`` float32 passage vectors."""
        return self._encode(self.passage_encoder, texts, "passage")

    @property
    def embedding_dim(self) -> int:
        """Width of the vectors this retriever returns."""
        return int(self.passage_encoder.config.hidden_size)

    def use_training_attention(self, training: bool) -> None:
        """Eager attention while training with attention dropout; the model's own (SDPA) for everything else.

        On CPU, PyTorch's fused attention has no kernel for dropout, so a training pass falls back to a path that
        keeps more temporaries than eager attention: one MiniLM step (32 questions x 2 passages of up to 256
        tokens, bf16 autocast) took 1.2x the time and 1.15x the memory of eager attention
        (``benchmarks/train_memory.py``, docs/performance.md). Same function, same dropout. Switched for the
        whole training phase (the Lightning hooks below), never per call, so a checkpointed layer recomputes
        with the attention it ran with.
        """
        for tower in {id(t): t for t in (self.passage_encoder, self.query_encoder)}.values():
            config = tower.config
            if float(getattr(config, "attention_probs_dropout_prob", 0.0) or 0.0) == 0.0:
                continue
            if training and config._attn_implementation == "sdpa":
                config._attn_implementation = "eager"
                self._eager_for_training.add(id(tower))
            elif not training and id(tower) in self._eager_for_training:
                config._attn_implementation = "sdpa"
                self._eager_for_training.discard(id(tower))

    def on_train_start(self) -> None:
        """Training attention on (:meth:`use_training_attention`)."""
        self.use_training_attention(True)

    def on_validation_model_eval(self) -> None:
        """Validation runs without gradients: back to the model's own attention."""
        super().on_validation_model_eval()
        self.use_training_attention(False)

    def on_validation_model_train(self) -> None:
        """Back to training attention after a validation inside ``fit`` (``trainer.training`` is False here)."""
        super().on_validation_model_train()
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self.use_training_attention(True)

    def on_train_end(self) -> None:
        """The trained model encodes with its own attention again."""
        self.use_training_attention(False)

    # -- training ------------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], split: str) -> Tensor:
        if self.loss is None:
            raise RuntimeError("BiEncoderModule has no loss: build it with loss=... to train")
        queries = self.encode_queries(batch["queries"])  # [B, D]
        passages = self.encode_passages(batch["passages"])  # [B·G, D]
        batch_size, group = batch["teacher_scores"].shape
        layout = layout_scores(
            batch["teacher_scores"],
            batch["group_mask"],
            batch["positive_mask"],
            batch["pids"],
            batch["positive_ids"],
            self.hparams["in_batch_negatives"],
        )
        # float32 similarities even under bf16 autocast: bf16's 8-bit mantissa would tie close hard negatives
        with torch.autocast(device_type=self.device.type, enabled=False):
            queries, passages = queries.float(), passages.float()
            if self.hparams["in_batch_negatives"]:
                student = queries @ passages.T  # [B, B·G]
            else:
                student = torch.einsum("bd,bgd->bg", queries, passages.view(batch_size, group, -1))  # [B, G]
        loss = self.loss(student, layout.teacher_scores, layout.mask, layout.positive_mask)
        # val/loss averaged over DDP ranks (each validates a share): checkpointing reads it; a no-op on one process
        self.log(f"{split}/loss", loss, batch_size=batch_size, prog_bar=True, sync_dist=split == "val")
        for name, value in getattr(self.loss, "components", {}).items():  # a weighted sum's parts
            self.log(f"{split}/loss_{name}", value, batch_size=batch_size)
        if layout.positive_mask.any():  # teachers without positives (pure distillation) have no accuracy
            top1 = student.masked_fill(~layout.mask, float("-inf")).argmax(dim=1)  # [B]
            hit = layout.positive_mask.gather(1, top1[:, None]).float().mean()
            self.log(f"{split}/acc@1", hit, batch_size=batch_size, prog_bar=split == "val")
        if split == "val":  # does the student order each group as its teacher does? (a diagnostic, not trained on)
            rho = teacher_student_spearman(
                own_group_scores(student, group), batch["teacher_scores"], batch["group_mask"]
            )
            if rho is not None:
                self.log("val/teacher_student_spearman", rho, batch_size=batch_size, sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of teacher-signal groups."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Loss and top-1 accuracy (a positive ranked first) on held-out training questions."""
        return self._step(batch, "val")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> tuple[Tensor, Tensor]:
        """Encode a batch of texts: returns (row indices ``[b]``, vectors ``[b, D]`` float32 on CPU)."""
        encode = self.encode_queries if batch["kind"] == "query" else self.encode_passages
        return batch["rows"], encode(batch["texts"]).float().cpu()

    def configure_optimizers(self) -> Any:
        """Optimizer from the config factory, with a per-step scheduler when one is configured."""
        if self.optimizer_factory is None:
            raise RuntimeError("BiEncoderModule has no optimizer: build it with optimizer=... to train")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _check_export(folder: Path) -> None:
    """Refuse a folder exported by ragdistill whose files no longer match its manifest (truncated, corrupted).

    Only our exports carry both ``ragdistill.json`` and ``manifest.json``; other folders are not checked.
    """
    if not (folder / SETTINGS_FILE).is_file() or not (folder / MANIFEST_FILE).is_file():
        return
    if problem := artifact_problem(folder, required=[SETTINGS_FILE]):
        raise CorruptArtifactError(
            f"exported retriever {folder} is damaged: {problem}; export it again by rerunning the training "
            "command that wrote it (its run dir's retriever/), or point retriever.path at another copy"
        )
