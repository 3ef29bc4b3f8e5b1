"""Reader fine-tuning on a tiny random-weight Llama and the fixture: examples, loss, training, the cached folder."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

import ragdistill.reader.finetune as finetune_module
from ragdistill.candidates.bm25 import BM25Candidates
from ragdistill.data.fixture import load_fixture
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.models.lm import LanguageModel
from ragdistill.reader.finetune import (
    RECORD_FILE,
    FinetuneSettings,
    build_examples,
    finetune_reader,
    finetune_task,
    reading_lists,
    train_on_examples,
)
from ragdistill.reader.finetune_module import IGNORE_INDEX, ReaderFinetuner, answer_loss, collate_examples
from ragdistill.reader.lm_reader import LMReader

EXACT = {"precision": "32-true", "accelerator": "cpu"}
SETTINGS = FinetuneSettings(n_distractors=2, epochs=1, batch_size=4, lr=1e-3, precision="32-true", seed=0)


@pytest.fixture(scope="module")
def data() -> RetrievalData:
    return load_fixture(n_train=8, n_eval=4, seed=0)


@pytest.fixture(scope="module")
def lists(data) -> tuple[list[Question], list[list[Passage]]]:
    bm25 = BM25Candidates(k=10).fit(data.corpus)
    return reading_lists(data, data.train, bm25, n_distractors=2, seed=0)


def _reader(lm: LanguageModel) -> LMReader:
    return LMReader(lm, max_new_tokens=6, max_passage_tokens=48, **EXACT)


@pytest.fixture
def reader(bert_tokenizer, build_tiny_llama) -> LMReader:
    """A fresh tiny Llama per test (training copies it, but tests must not share its state)."""
    return _reader(LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="tiny-llama"))


def test_reading_lists_hold_the_gold_passage_and_distinct_bm25_distractors(data, lists):
    questions, passages = lists
    assert len(questions) == len(data.train) == 8
    for question, read in zip(questions, passages, strict=True):
        ids = [p.id for p in read]
        assert len(ids) == len(set(ids)) == 3 and question.gold_ids[0] in ids
        assert sum(pid in question.gold_ids for pid in ids) == 1
    positions = {[p.id for p in read].index(q.gold_ids[0]) for q, read in zip(questions, passages, strict=True)}
    assert len(positions) > 1  # shuffled: the gold passage's place is no cue
    again = reading_lists(data, data.train, BM25Candidates(k=10).fit(data.corpus), n_distractors=2, seed=0)[1]
    assert [[p.id for p in r] for r in again] == [[p.id for p in r] for r in passages]


def test_labels_mask_everything_but_the_answer_and_the_end_token(reader, lists, bert_tokenizer):
    questions, passages = lists
    examples = build_examples(reader, questions, passages)
    end = reader.lm.model.generation_config.eos_token_id  # BERT's tokenizer has no eos: the model's
    for example, question, read in zip(examples, questions, passages, strict=True):
        prompt = reader.build_prompt(question.text, read).ids
        answer = bert_tokenizer(" " + question.answers[0], add_special_tokens=False)["input_ids"][:5]
        assert example.input_ids == prompt + answer + [end]
        assert example.labels == [IGNORE_INDEX] * len(prompt) + answer + [end]
        assert example.answer_start == len(prompt)


def test_encoder_decoder_lms_are_refused(bert_tokenizer, build_tiny_t5, lists):
    t5 = _reader(LanguageModel.from_objects(build_tiny_t5(bert_tokenizer), bert_tokenizer, name="tiny-t5"))
    with pytest.raises(ValueError, match="decoder-only"):
        build_examples(t5, *lists)


def test_answer_loss_matches_transformers_and_needs_only_the_last_logits(reader, lists):
    examples = build_examples(reader, *lists)[:3]
    batch = collate_examples(examples, pad_id=reader.lm.tokenizer.pad_token_id)
    model = reader.lm.model
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        reference = model(**inputs, labels=batch["labels"]).loss
        full = answer_loss(model(**inputs).logits, batch["labels"])
        kept = answer_loss(model(**inputs, logits_to_keep=batch["keep"]).logits, batch["labels"])
    torch.testing.assert_close(full, reference)
    torch.testing.assert_close(kept, reference)
    with pytest.raises(ValueError, match="before the last"):
        answer_loss(torch.zeros(3, 2, 5), batch["labels"])


def test_a_few_steps_lower_the_answer_loss(reader, lists):
    examples = build_examples(reader, *lists)
    pad = reader.lm.tokenizer.pad_token_id
    model = copy.deepcopy(reader.lm.model)

    def mean_loss() -> float:
        module = ReaderFinetuner(model, lr=1.0, weight_decay=0.0)
        with torch.no_grad():
            return float(module(collate_examples(examples, pad)))

    before = mean_loss()
    losses = train_on_examples(model, examples, pad, dataclasses.replace(SETTINGS, epochs=4), "cpu", False)
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert mean_loss() < before - 0.1
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def _flip_byte(file: Path) -> None:
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    file.write_bytes(bytes(raw))


def test_the_folder_loads_answers_is_reused_and_rebuilt_when_damaged(
    reader, lists, data, tmp_path, monkeypatch, caplog
):
    first = finetune_reader(reader, *lists, SETTINGS, tmp_path, accelerator="cpu", progress=False)
    assert not first.reused and first.record["examples"] == 8
    loaded = LanguageModel(path=str(first.directory))
    answers = _reader(loaded).answer([q.text for q in data.eval], [[data.passage(q.gold_ids[0])] for q in data.eval])
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    before = {k: v.clone() for k, v in reader.lm.model.state_dict().items()}
    assert any(not torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())  # it did train
    assert json.loads((first.directory / RECORD_FILE).read_text())["epoch_losses"] == first.record["epoch_losses"]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached reader must not be trained again")

    with monkeypatch.context() as patch:
        patch.setattr(finetune_module, "train_on_examples", no_training)
        second = finetune_reader(reader, *lists, SETTINGS, tmp_path, accelerator="cpu", progress=False)
    assert second.reused and second.directory == first.directory and second.record == first.record

    _flip_byte(first.directory / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="ragdistill.reader.artifact"):
        third = finetune_reader(reader, *lists, SETTINGS, tmp_path, accelerator="cpu", progress=False)
    assert not third.reused and "fails its checksum" in caplog.text
    assert finetune_module.intact_folder(third.directory, [RECORD_FILE], "reader")
    assert third.record["epoch_losses"] == first.record["epoch_losses"]  # same seed, same training


def test_finetune_reader_config_runs_end_to_end(compose_cfg, tiny_lm_dir):
    overrides = [
        "data=fixture",
        "data.n_train=6",
        "data.n_eval=4",
        "lm=hf",
        f"lm.path={tiny_lm_dir}",
        "n_distractors=1",
        "precision=32-true",
        "accelerator=cpu",
        "progress=false",
        "reader.max_new_tokens=4",
        "reader.max_passage_tokens=32",
        "reader.accelerator=cpu",
    ]
    cfg = compose_cfg("finetune_reader", overrides)
    metrics, objects = finetune_task(cfg)
    for name in ("em_before", "em_after", "f1_before", "f1_after"):
        assert 0.0 <= metrics[f"reader/{name}"] <= 1.0
    assert metrics["reader/reused"] == 0.0 and metrics["reader/train_examples"] == 6.0
    run_dir = Path(cfg.paths.output_dir)
    written = json.loads((run_dir / "reader.json").read_text())
    assert written["path"] == str(objects["result"].directory) and written["evaluation"]["questions"] == 4
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert {"command", "packages", "git"} <= json.loads((run_dir / "run_info.json").read_text()).keys()
    assert (run_dir / "resolved_config.yaml").exists()  # recorded like a training run
    assert finetune_task(cfg)[0]["reader/reused"] == 1.0
