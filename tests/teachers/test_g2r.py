"""G2R: generated positives (cached, resumable, garbage dropped) beside the source LM's scores; dialogue data."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from ragdistill.data.ranking import RankedList
from ragdistill.data.schemas import Passage, Question, RetrievalData
from ragdistill.data.signal import TeacherSignal
from ragdistill.teachers.base import Teacher
from ragdistill.teachers.g2r import G2RTeacher
from ragdistill.teachers.unit_generation import UnitGenerator


class FixedScores(Teacher):
    def __init__(self, scores: dict[str, list[float]]):
        self.scores = scores

    def score(self, questions, candidates, data):
        return [TeacherSignal(q.id, candidates[q.id].ids, np.array(self.scores[q.id])) for q in questions]


class CountingChat:
    """Writes ``unit <n> for: <question>`` (or garbage for questions containing 'junk'); counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    def identity(self) -> dict[str, str]:
        return {"model": "counting"}

    def complete_many(self, requests: Sequence[Sequence[dict[str, str]]], description: str = "", **params) -> list[str]:
        answers = []
        for messages in requests:
            self.requests += 1
            text = messages[-1]["content"]
            answers.append("  " if "junk" in text else f"unit {self.requests} written for: {text}")
        return answers


@pytest.fixture
def setting():
    corpus = [Passage(f"p{i}", f"text {i}") for i in range(4)]
    questions = [
        Question("q1", "who built it?", ("Ada",), ("p3",)),
        Question("q2", "junk question", ("Bob",), ("p1",)),
    ]
    data = RetrievalData("toy", corpus, questions, [])
    candidates = {q.id: RankedList(["p0", "p1", "p2"], np.zeros(3)) for q in questions}
    source = FixedScores({"q1": [-3.0, -1.0, -2.0], "q2": [-1.0, -0.5, -2.0]})
    return data, questions, candidates, source


def test_generated_units_join_as_unscored_positives(setting, tmp_path):
    data, questions, candidates, source = setting
    chat = CountingChat()
    teacher = G2RTeacher(source, chat, prompt="Answer {question} ({answer})", min_chars=10, cache_dir=str(tmp_path))
    q1, q2 = teacher.score(questions, candidates, data)
    assert q1.candidate_ids == ["p0", "p1", "p2", "p3", "g2r:q1:0"]  # gold outside the pool, then the unit
    assert q1.positive_ids == ("p3", "g2r:q1:0")
    # model level kept; the gold outside the pool and the unit carry no score: the teacher never scored them
    np.testing.assert_allclose(q1.scores, [-3.0, -1.0, -2.0, -np.inf, -np.inf])
    assert data.passage("g2r:q1:0").text.endswith("Answer who built it? (Ada)")  # readable for training…
    assert "g2r:q1:0" not in {p.id for p in data.corpus}  # …never indexed
    assert q2.positive_ids == ("p1",)  # its generation was blank: dropped, counted
    figures = teacher.metrics()
    assert figures["g2r/units_kept"] == 1 and figures["g2r/units_dropped"] == 1 and figures["g2r/units_generated"] == 2
    assert figures["g2r/units_with_answer"] == 1.0  # the kept unit repeats the prompt, which names "Ada"


def test_the_kd_term_reads_only_what_the_teacher_scored(setting, tmp_path):
    """Through the batch layout and kl_multi_positive_infonce: units change the contrastive term only."""
    from ragdistill.losses import KLDistillLoss, MultiPositiveInfoNCELoss, kl_distill
    from ragdistill.retriever.in_batch import layout_scores

    data, questions, candidates, source = setting
    teacher = G2RTeacher(
        source, CountingChat(), prompt="Answer {question} ({answer})", min_chars=10, cache_dir=str(tmp_path)
    )
    q1 = teacher.score(questions, candidates, data)[0]
    scores = torch.tensor(q1.scores)[None]  # [1, 5]
    positive = torch.tensor(q1.positive_mask)[None]
    layout = layout_scores(
        scores, torch.ones_like(positive), positive, [q1.candidate_ids], [set(q1.positive_ids)], True
    )
    student = torch.tensor([[0.1, 0.4, 0.2, 0.9, 0.8]], requires_grad=True)
    kd = KLDistillLoss()(student, layout.teacher_scores, layout.mask, layout.positive_mask)
    assert torch.allclose(kd, kl_distill(student[:, :3], scores[:, :3], None, tau_student=0.05, tau_teacher=1.0))
    (grad,) = torch.autograd.grad(kd, student)
    assert torch.all(grad[0, 3:] == 0)  # no invented score pulls (or pushes) the gold passage or the unit
    contrastive = MultiPositiveInfoNCELoss()(student, layout.teacher_scores, layout.mask, layout.positive_mask)
    (grad,) = torch.autograd.grad(contrastive, student)
    assert torch.all(grad[0, 3:] < 0)  # both positives are pulled in by the contrastive term


def test_index_generated_adds_the_units_to_the_retrievable_corpus(setting, tmp_path):
    data, questions, candidates, source = setting
    before = len(data.corpus)
    teacher = G2RTeacher(
        source,
        CountingChat(),
        prompt="Answer {question} ({answer})",
        min_chars=10,
        cache_dir=str(tmp_path),
        index_generated=True,
    )
    teacher.score(questions, candidates, data)
    assert [p.id for p in data.corpus[before:]] == ["g2r:q1:0"]  # G2R's augmented response set
    assert data.passage("g2r:q1:0").text.endswith("(Ada)")


def test_derive_returns_its_units_and_leaves_the_data_alone(setting, tmp_path):
    """The DerivedTeacher contract: created passages come back in the Derivation; the caller registers them."""
    data, questions, candidates, source = setting
    corpus = [p.id for p in data.corpus]
    teacher = G2RTeacher(
        source, CountingChat(), prompt="Answer {question} ({answer})", min_chars=10, cache_dir=str(tmp_path)
    )
    derived = teacher.derive(source.score(questions, candidates, data), questions, candidates, data)
    assert [p.id for p in derived.training_passages] == ["g2r:q1:0"] and not derived.corpus_passages
    assert [p.id for p in data.corpus] == corpus
    with pytest.raises(KeyError, match="g2r:q1:0"):
        data.passage("g2r:q1:0")
    derived.register_passages(data)
    assert data.passage("g2r:q1:0").text.endswith("(Ada)") and [p.id for p in data.corpus] == corpus


def test_model_level_only_and_data_level_switches(setting, tmp_path):
    data, questions, candidates, source = setting
    model_only = G2RTeacher(source, None, per_question=0, cache_dir=str(tmp_path))
    q1, _ = model_only.score(questions, candidates, data)
    assert q1.positive_ids == ("p3",) and not any(pid.startswith("g2r:") for pid in q1.candidate_ids)
    with pytest.raises(ValueError, match="needs a chat model"):
        G2RTeacher(source, None, per_question=1)


def test_generation_is_cached_and_resumes_after_a_crash(setting, tmp_path):
    _, questions, _, _ = setting
    first_chat = CountingChat()
    generator = UnitGenerator(first_chat, "Q: {question}", chunk_questions=1, cache_dir=tmp_path, min_chars=1)
    units = generator.generate(questions)
    assert first_chat.requests == 2 and set(units) == {"q1"}  # q2's blank answer is dropped
    [final] = (tmp_path / "generated_units").glob("*.jsonl")

    again = CountingChat()
    cached = UnitGenerator(again, "Q: {question}", chunk_questions=1, cache_dir=tmp_path, min_chars=1)
    assert cached.generate(questions) == units and again.requests == 0 and cached.stats.reused == 2

    # a crash after the first chunk, mid-way through writing the second: the partial file holds one whole
    # record and a truncated line
    lines = final.read_text().splitlines()
    final.unlink()
    partial = final.with_suffix(".partial.jsonl")
    partial.write_text(lines[0] + "\n" + lines[1][:10])
    resumed_chat = CountingChat()
    resumed = UnitGenerator(resumed_chat, "Q: {question}", chunk_questions=1, cache_dir=tmp_path, min_chars=1)
    resumed.generate(questions)
    assert resumed_chat.requests == 1  # only the question after the crash
    assert final.exists() and not partial.exists() and len(final.read_text().splitlines()) == 2

    final.write_text("{not json\n")  # a corrupt artifact is reported and regenerated
    redo_chat = CountingChat()
    UnitGenerator(redo_chat, "Q: {question}", chunk_questions=1, cache_dir=tmp_path, min_chars=1).generate(questions)
    assert redo_chat.requests == 2 and json.loads(final.read_text().splitlines()[0])["qid"] == "q1"


def test_a_changed_prompt_misses_the_cache_and_bad_settings_raise(setting, tmp_path):
    _, questions, _, _ = setting
    UnitGenerator(CountingChat(), "Q: {question}", cache_dir=tmp_path).generate(questions)
    chat = CountingChat()
    UnitGenerator(chat, "Question: {question}", cache_dir=tmp_path).generate(questions)
    assert chat.requests == 2
    with pytest.raises(ValueError, match="same unit 2 times"):
        UnitGenerator(chat, "Q: {question}", per_question=2)
    with pytest.raises(ValueError, match=r"must contain \{question\}"):
        UnitGenerator(chat, "no placeholder")


def test_a_prompt_with_an_answer_skips_answerless_questions(tmp_path):
    chat = CountingChat()
    generator = UnitGenerator(chat, "{question} -> {answer}", cache_dir=tmp_path, min_chars=1)
    units = generator.generate([Question("a", "with", ("x",)), Question("b", "without")])
    assert set(units) == {"a"} and generator.stats.skipped_questions == 1 and chat.requests == 1


def test_response_likelihood_scores_the_candidate_given_the_context(tiny_llama):
    from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

    corpus = [Passage("r0", "Sure, we open at nine."), Passage("r1", "Try the pasta.")]
    question = Question("d0", "Hi!\nWhen do you open?", (), ("r0",))
    data = RetrievalData("dialogue", corpus, [question], [])
    teacher = LMLikelihoodTeacher(tiny_llama, target="candidate", num_candidates=2, precision="32-true")
    [signal] = teacher.score([question], {"d0": RankedList(["r0", "r1"], np.zeros(2))}, data)
    assert np.isfinite(signal.scores).all() and signal.scores[0] != signal.scores[1]
    assert teacher.reduction == "mean"


G2R_FAST = [
    "trainer.max_epochs=1",
    "+trainer.max_steps=2",
    "logger=csv",
    "lm=hf",
    "teacher.source.num_candidates=4",
    "teacher.source.precision=32-true",
    "teacher.chat.max_new_tokens=12",
    "teacher.chat.precision=32-true",
    "teacher.min_chars=1",
    "loss=kl_multi_positive_infonce",
    "datamodule.positives_per_group=null",
    "datamodule.group_size=4",
    "evaluation.bm25_baseline=false",
]


@pytest.fixture
def chat_lm_dir(tmp_path_factory, bert_tokenizer, build_tiny_llama, save_model_dir):
    """The tiny Llama with a chat template (the generator needs one)."""
    import copy

    tokenizer = copy.deepcopy(bert_tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    return save_model_dir("tiny_chat_llama", build_tiny_llama(tokenizer), tokenizer)


@pytest.mark.pipeline
def test_g2r_trains_on_the_fixture_and_never_indexes_its_units(tmp_path, compose_at, chat_lm_dir, tiny_encoder_dir):
    from ragdistill.pipeline import train

    overrides = [
        "experiment=fixture_smoke",
        *G2R_FAST,
        "teacher=g2r",
        f"lm.path={chat_lm_dir}",
        f"retriever.path={tiny_encoder_dir}",
    ]
    cfg = compose_at("config", overrides, tmp_path / "run")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    metrics, objects = train(cfg)
    generated = {pid for s in objects["signals"] for pid in s.positive_ids if pid.startswith("g2r:")}
    assert len(generated) == metrics["g2r/units_kept"] > 0
    assert metrics["teacher/cache_shards_scored"] > 0  # the model level's LM scores
    assert 0 <= metrics["test/gold/recall@5"] <= 1
    assert not generated & {p.id for p in objects["data"].corpus}

    cfg = compose_at("config", [*overrides, "evaluate=false"], tmp_path / "again")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    again, _ = train(cfg)
    assert again["g2r/units_reused"] == again["g2r/units_generated"] + again["g2r/units_reused"] > 0
    assert again["teacher/cache_shards_reused"] == again["teacher/cache_shards_total"]


def test_g2r_on_dialogue_data_with_response_likelihood(tmp_path, compose_at, chat_lm_dir, tiny_encoder_dir):
    from pathlib import Path

    from ragdistill.pipeline import train

    folder = Path(__file__).resolve().parents[1] / "fixtures" / "dialogue"
    overrides = [
        "data=jsonl",
        f"data.corpus_path={folder / 'corpus.jsonl'}",
        f"data.train_path={folder / 'train.jsonl'}",
        f"data.eval_path={folder / 'eval.jsonl'}",
        "data.name=dialogue",
        "experiment=fixture_smoke",
        "evaluation.ks=[1,5,20]",  # a 20-passage corpus: recall@100 would count every question as found
        *G2R_FAST,
        "teacher=g2r",
        "teacher/source=response_likelihood",
        "teacher.prompt='Continue the conversation with one reply.\n{question}'",
        f"lm.path={chat_lm_dir}",
        f"retriever.path={tiny_encoder_dir}",
    ]
    cfg = compose_at("config", overrides, tmp_path / "run")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    metrics, objects = train(cfg)
    assert objects["data"].train[0].text.count("\n") == 2  # three turns, one per line
    assert metrics["g2r/units_kept"] > 0 and 0 <= metrics["test/gold/recall@5"] <= 1
