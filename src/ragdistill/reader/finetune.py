"""Fine-tune the RAG reader on training questions read with their gold passage among BM25 distractors.

Each training question with an answer and a gold passage becomes one example: the reader prompt of
:meth:`~ragdistill.reader.lm_reader.LMReader.build_prompt` over the gold passage and ``n_distractors`` of the
question's top BM25 passages that are not gold, in a seeded random order (so the answer's position is no
cue), followed by the answer's tokens and an end-of-sequence token. The loss is the causal-LM cross-entropy
of those answer tokens alone:

    L = −1/N Σ_i Σ_{t ∈ answer_i} log p(y_t | prompt_i, y_<t)

Training and evaluation read identical prompts, and the result is a plain transformers folder, so it serves
as the RAG reader and as the LM of the likelihood / attention teachers alike (``lm=hf lm.path=<folder>``).
It is cached in ``<cache_dir>/readers/<key>/`` (key: the LM's fingerprint, the examples' tokens and the
settings), reused when intact and trained again when damaged. :func:`finetune_task` is the
``ragdistill-finetune-reader`` run, which also reports EM/F1 before and after on held-out questions read the
same way (gold passage + distractors: a reading test, not an end-to-end RAG figure).

Decoder-only LMs only: an encoder-decoder reader (T5, FiD) would need its own example layout.

References:
    Izacard & Grave, "Leveraging Passage Retrieval with Generative Models for Open Domain Question
    Answering", EACL 2021, arXiv:2007.01282 (readers trained on retrieved passages, gold among them).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from ragdistill.callbacks.lightning_progress import lightning_progress_bar
from ragdistill.candidates.base import CandidateGenerator
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.models.generate import eos_ids
from ragdistill.models.lm import LanguageModel, LMDtype
from ragdistill.reader.artifact import intact_folder, save_folder
from ragdistill.reader.finetune_module import IGNORE_INDEX, ReaderExample, ReaderFinetuner, collate_examples
from ragdistill.reader.lm_reader import LMReader
from ragdistill.reader.qa import qa_scores
from ragdistill.runtime.precision import resolve_precision
from ragdistill.runtime.run_info import start_run
from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.cache_key import config_key
from ragdistill.utils.settings import dataclass_from_mapping

logger = logging.getLogger(__name__)

FINETUNE_FORMAT_VERSION = 1
"""Bump when the examples or the training change meaning: older cached readers then miss."""

RECORD_FILE = "ragdistill_reader.json"
"""Written into the reader folder: the settings, the base LM, the examples' count and the training losses."""


@dataclass(frozen=True)
class FinetuneSettings:
    """What determines the fine-tuned weights besides the LM and the examples (all part of the cache key).

    Attributes:
        n_distractors: BM25 passages (not gold) read beside the gold one, so the reader learns to find the
            answer among similar passages, as it must behind a retriever.
        epochs: Passes over the examples.
        batch_size: Examples per optimizer step.
        lr: AdamW's learning rate.
        weight_decay: AdamW's decoupled weight decay.
        gradient_clip_val: Gradient norm clipped to this (``0``: no clipping).
        precision: Lightning precision of training (``bf16-mixed``: float32 weights, bfloat16 matmuls).
        seed: Seeds the passage order of each question, the example order and torch.
    """

    n_distractors: int = 3
    epochs: int = 1
    batch_size: int = 4
    lr: float = 5e-5
    weight_decay: float = 0.0
    gradient_clip_val: float = 1.0
    precision: str = "bf16-mixed"
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FinetuneSettings:
        """Settings from a config mapping; an unknown name is a ``ValueError`` naming the known ones."""
        return dataclass_from_mapping(cls, values, "reader fine-tuning settings")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"finetune {name} must be >= 1, got {getattr(self, name)}")
        if self.n_distractors < 0 or self.lr <= 0 or self.weight_decay < 0 or self.gradient_clip_val < 0:
            raise ValueError(
                "finetune needs n_distractors >= 0, lr > 0, weight_decay >= 0 and gradient_clip_val >= 0, got "
                f"{self.n_distractors}, {self.lr}, {self.weight_decay}, {self.gradient_clip_val}"
            )


@dataclass
class FinetuneResult:
    """A fine-tuned reader folder and what made it.

    Attributes:
        directory: The transformers folder (``lm=hf lm.path=<directory>``).
        key: The cache key.
        record: The content of :data:`RECORD_FILE` (settings, base LM, examples, per-epoch losses).
        reused: Whether it came from the cache (no training this run).
    """

    directory: Path
    key: str
    record: dict[str, Any]
    reused: bool = False

    def metrics(self) -> dict[str, float]:
        """``reader/*`` training figures for metrics.json (losses are per-epoch means)."""
        losses = self.record["epoch_losses"]
        return {
            "reader/train_examples": float(self.record["examples"]),
            "reader/train_loss_first_epoch": float(losses[0]),
            "reader/train_loss_last_epoch": float(losses[-1]),
            "reader/reused": float(self.reused),
        }


def reading_lists(
    data: RetrievalData,
    questions: Sequence[Question],
    candidates: CandidateGenerator | None,
    n_distractors: int,
    seed: int,
) -> tuple[list[Question], list[list[Passage]]]:
    """Each answerable question's gold passage and ``n_distractors`` BM25 distractors, in a seeded order.

    Args:
        data: Where passages are looked up by id.
        questions: The questions; those without an answer or a gold passage are left out (logged).
        candidates: A fitted first stage giving the distractors (its top passages that are not gold);
            ``None`` only with ``n_distractors=0``.
        n_distractors: Distractors per question (fewer when the first stage returns fewer).
        seed: With the question id, seeds each question's passage order, so a question reads the same
            prompt whatever other questions are selected.

    Returns:
        The kept questions and their passage lists, aligned.

    Raises:
        ValueError: If distractors are asked for without ``candidates``.
    """
    kept = [q for q in questions if q.answers and q.gold_ids]
    if len(kept) < len(questions):
        logger.info(
            "Left out %d of %d questions without an answer or a gold passage",
            len(questions) - len(kept),
            len(questions),
        )
    if n_distractors and candidates is None:
        raise ValueError("distractors need a fitted candidate generator")
    ranked = {}
    if n_distractors and kept and candidates is not None:
        ranked = candidates.retrieve(kept, k=n_distractors + max(len(q.gold_ids) for q in kept))
    lists = []
    for question in kept:
        distractors = [pid for pid in ranked[question.id].ids if pid not in question.gold_ids] if ranked else []
        passages = [data.passage(question.gold_ids[0])] + [data.passage(p) for p in distractors[:n_distractors]]
        random.Random(f"{seed}:{question.id}").shuffle(passages)
        lists.append(passages)
    return kept, lists


def end_token_id(lm: LanguageModel) -> int | None:
    """The token an answer is trained to end with: the tokenizer's eos, else the lowest id generation stops at.

    The reader's generation stops at every id of :func:`~ragdistill.models.generate.eos_ids`, so an answer
    trained to end with one of them ends there when read (``None``: the LM has none).
    """
    if lm.tokenizer.eos_token_id is not None:
        return int(lm.tokenizer.eos_token_id)
    stops = eos_ids(lm.model, lm.tokenizer)
    return min(stops) if stops else None


def check_decoder_only(lm: LanguageModel) -> None:
    """Refuse an encoder-decoder LM (its prompt is the encoder's input: another example layout).

    Raises:
        ValueError: Naming the LM and what to do instead.
    """
    if lm.is_encoder_decoder:
        raise ValueError(
            f"reader fine-tuning supports decoder-only LMs; {lm.name} is encoder-decoder (T5/FiD): fine-tune it "
            "with its own seq2seq recipe, then load the folder with lm=hf lm.path=<folder>"
        )


def build_examples(
    reader: LMReader, questions: Sequence[Question], passages: Sequence[Sequence[Passage]]
) -> list[ReaderExample]:
    """Reader prompts followed by each question's first gold answer, labelled on the answer only.

    The answer is written as the likelihood teacher writes its target (the template's ``target``, leading
    whitespace dropped after a chat template) and cut to ``reader.max_new_tokens − 1`` tokens, so prompt,
    answer and end token fit the window the reader budgets for.

    Raises:
        ValueError: For an encoder-decoder LM, or an answer with no tokens.
    """
    lm = reader.lm
    check_decoder_only(lm)
    end = end_token_id(lm)
    if end is None:
        logger.warning("LM <%s> has no end-of-sequence token: answers are trained without one", lm.name)
    builder = reader.prompt_builder()
    examples = []
    for question, read in zip(questions, passages, strict=True):
        prompt = reader.build_prompt(question.text, read).ids
        answer = builder.target_tokens(question.answers[0], max(reader.max_new_tokens - 1, 1))
        answer += [end] if end is not None else []
        if not answer:
            raise ValueError(f"question {question.id}: the answer {question.answers[0]!r} has no tokens")
        examples.append(ReaderExample(question.id, prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return examples


def train_on_examples(
    model: nn.Module,
    examples: Sequence[ReaderExample],
    pad_id: int,
    settings: FinetuneSettings,
    accelerator: str = "auto",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` in place on ``examples`` (shuffled with ``settings.seed``); it is left in eval mode, frozen.

    Returns:
        The mean training loss of each epoch.
    """
    torch.manual_seed(settings.seed)
    # a list is a map-style dataset (len + indexing); torch's stubs only name Dataset
    loader: DataLoader[ReaderExample] = DataLoader(
        list(examples),  # type: ignore[arg-type]
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(settings.seed),
        collate_fn=partial(collate_examples, pad_id=pad_id),
    )
    module = ReaderFinetuner(model.train().requires_grad_(True), settings.lr, settings.weight_decay)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=settings.epochs,
        precision=settings.precision,  # type: ignore[arg-type]
        gradient_clip_val=settings.gradient_clip_val or None,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        callbacks=[lightning_progress_bar()] if progress else None,
        log_every_n_steps=10,
    )
    trainer.fit(module, loader)
    model.cpu().eval().requires_grad_(False)
    return module.epoch_losses


def finetune_key(lm: LanguageModel, examples: Sequence[ReaderExample], settings: FinetuneSettings) -> str:
    """The cache key: the LM's fingerprint, a hash of the examples' tokens and labels, the settings.

    Hashing the tokens covers everything that shapes them (questions, passages, their order, the prompt
    wording and budgets, the tokenizer) without listing each.
    """
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.qid, example.input_ids, example.labels]).encode())
    return config_key(
        {"reader_finetune": FINETUNE_FORMAT_VERSION, "lm": lm.fingerprint(), "examples": digest.hexdigest()},
        dataclasses.asdict(settings),
    )


def finetune_reader(
    reader: LMReader,
    questions: Sequence[Question],
    passages: Sequence[Sequence[Passage]],
    settings: FinetuneSettings,
    cache_dir: str | Path,
    accelerator: str = "auto",
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a copy of ``reader.lm`` on the questions read from their passages; cached under ``cache_dir``.

    ``reader.lm`` itself is left as it was (frozen): the copy is trained, saved, and dropped.

    Args:
        reader: The reader whose prompts (wording, budgets) the examples use.
        questions: Training questions with answers (the first answer is the target).
        passages: Each question's passages (see :func:`reading_lists`).
        settings: :class:`FinetuneSettings`.
        cache_dir: Where ``readers/<key>/`` is kept.
        accelerator: Lightning accelerator for training (not part of the key).
        progress: Show Lightning's progress bar.

    Returns:
        The reader folder and its record.

    Raises:
        ValueError: For an encoder-decoder LM or no examples.
    """
    # the precision it really trains in is what the weights depend on, so that is what the key holds
    settings = dataclasses.replace(settings, precision=resolve_precision(settings.precision, accelerator))
    examples = build_examples(reader, questions, passages)
    if not examples:
        raise ValueError("no training question has an answer and a gold passage: nothing to fine-tune on")
    lm = reader.lm
    key = finetune_key(lm, examples, settings)
    directory = Path(cache_dir) / "readers" / key
    if intact_folder(directory, [RECORD_FILE, "config.json"], "Fine-tuned reader folder"):
        logger.info("Reusing fine-tuned reader <key=%s> (%s)", key, directory)
        return FinetuneResult(directory, key, json.loads((directory / RECORD_FILE).read_text()), reused=True)
    logger.info(
        "Fine-tuning reader <%s> on %d examples (%d tokens, %d answer tokens) <key=%s>",
        lm.name,
        len(examples),
        sum(len(e.input_ids) for e in examples),
        sum(len(e.labels) - e.answer_start for e in examples),
        key,
    )
    model = copy.deepcopy(lm.model)
    losses = train_on_examples(model, examples, lm.tokenizer.pad_token_id, settings, accelerator, progress)
    record = {
        "format_version": FINETUNE_FORMAT_VERSION,
        "settings": dataclasses.asdict(settings),
        "lm": {"name": lm.name, "path": lm.path, "fingerprint": lm.fingerprint()},
        "examples": len(examples),
        "epoch_losses": losses,
    }
    save_folder(
        directory,
        partial(_write_reader, model, lm.tokenizer, record),
        [RECORD_FILE, "config.json"],
        "fine-tuned reader",
        settings=record["settings"],
        lm=record["lm"],
    )
    logger.info("Saved fine-tuned reader <key=%s> to <%s> (epoch losses %s)", key, directory, losses)
    return FinetuneResult(directory, key, record)


def _write_reader(model: nn.Module, tokenizer: Any, record: dict[str, Any], folder: Path) -> None:
    """Model, tokenizer, generation config and :data:`RECORD_FILE`: a folder ``from_pretrained`` reads."""
    model.save_pretrained(folder)  # type: ignore[operator]
    tokenizer.save_pretrained(folder)
    if not (folder / "generation_config.json").exists():
        model.generation_config.save_pretrained(folder)  # type: ignore[operator, union-attr]
    atomic_write_text(folder / RECORD_FILE, json.dumps(record, indent=2))


def load_finetuned(base: LanguageModel, directory: Path) -> LanguageModel:
    """The fine-tuned folder as a :class:`LanguageModel` loaded like ``base`` (dtype, chat template)."""
    return LanguageModel(
        path=str(directory),
        dtype=cast(LMDtype, base.dtype),  # a base that loads from a path has one of the DTYPES
        cache_dir=str(base.cache_dir),
        trust_remote_code=base.trust_remote_code,
        use_chat_template=base.use_chat_template,
    )


def reader_like(reader: LMReader, lm: LanguageModel) -> LMReader:
    """A reader with ``reader``'s prompt, budgets and batching that reads with ``lm``."""
    return LMReader(
        lm,
        prompt=reader.template,
        max_new_tokens=reader.max_new_tokens,
        max_passage_tokens=reader.max_passage_tokens,
        max_prompt_tokens=reader.max_prompt_tokens,
        max_batch_tokens=reader.settings.max_batch_tokens,
        max_batch_size=reader.settings.max_batch_size,
        precision=reader.settings.precision,
        accelerator=reader.settings.accelerator,
    )


def reading_scores(
    reader: LMReader, questions: Sequence[Question], passages: Sequence[Sequence[Passage]]
) -> dict[str, float]:
    """EM and F1 of the reader's answers to ``questions`` read from ``passages`` (``{"em", "f1"}``)."""
    answers = reader.answer([q.text for q in questions], passages)
    return qa_scores(answers, [list(q.answers) for q in questions])


def finetune_task(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """``ragdistill-finetune-reader``: fine-tune ``cfg.reader``'s LM; EM/F1 before and after on ``data.eval``.

    The held-out questions are read like the training ones: gold passage + ``n_distractors`` BM25
    distractors, shuffled. Writes ``reader.json`` (the folder and what made it) and ``metrics.json``.

    Args:
        cfg: The composed ``conf/finetune_reader.yaml``.

    Returns:
        The ``reader/*`` metrics and ``{"data", "reader", "result", "finetuned"}`` (the last: an
        :class:`LMReader` over the fine-tuned folder).

    Raises:
        ValueError: With ``reader.pear=true`` (fine-tune the plain LM; PEAR can be applied to the result), or
            an encoder-decoder LM.
    """
    from hydra.utils import instantiate

    from ragdistill.candidates.bm25 import BM25Candidates

    settings = FinetuneSettings.from_mapping({f.name: cfg[f.name] for f in dataclasses.fields(FinetuneSettings)})
    start_run(cfg)
    data: RetrievalData = instantiate(cfg.data)
    logger.info("Data %s", data.summary())
    reader: LMReader = instantiate(cfg.reader)
    if reader.pear is not None:
        raise ValueError("fine-tune the reader without PEAR (reader.pear=false); run PEAR on the fine-tuned folder")
    check_decoder_only(reader.lm)  # before the first evaluation pass, not after it
    bm25 = BM25Candidates(k=settings.n_distractors + 1).fit(data.corpus) if settings.n_distractors else None
    train = reading_lists(data, data.train, bm25, settings.n_distractors, settings.seed)
    held_out = reading_lists(data, data.eval, bm25, settings.n_distractors, settings.seed)
    before = reading_scores(reader, *held_out) if cfg.evaluate else {}
    result = finetune_reader(reader, *train, settings, cfg.cache_dir, cfg.accelerator, cfg.get("progress", True))
    finetuned = reader_like(reader, load_finetuned(reader.lm, result.directory))
    after = reading_scores(finetuned, *held_out) if cfg.evaluate else {}
    metrics = (
        result.metrics()
        | {f"reader/{name}_before": value for name, value in before.items()}
        | {f"reader/{name}_after": value for name, value in after.items()}
    )
    run_dir = Path(cfg.paths.output_dir)
    summary = {
        "path": str(result.directory),
        "key": result.key,
        "reused": result.reused,
        "use_with": f"lm=hf lm.path={result.directory}",
        "evaluation": {
            "questions": len(held_out[0]),
            "passages": f"gold + {settings.n_distractors} BM25 distractors, shuffled (seed {settings.seed})",
        },
        **result.record,
        "metrics": metrics,
    }
    atomic_write_text(run_dir / "reader.json", json.dumps(summary, indent=2))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    logger.info(
        "Fine-tuned reader in <%s> (EM %s -> %s on %d held-out questions); use it with lm=hf lm.path=%s",
        result.directory,
        _shown(before.get("em")),
        _shown(after.get("em")),
        len(held_out[0]),
        result.directory,
    )
    return metrics, {"data": data, "reader": reader, "result": result, "finetuned": finetuned}


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
