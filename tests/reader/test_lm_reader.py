"""The LM reader on tiny random-weight LMs: order, batch independence (left padding), budgets, records."""

from __future__ import annotations

import json

import pytest
import torch

from ragdistill.data.schemas import Passage, Question
from ragdistill.models.generate import NewlineStop, left_pad
from ragdistill.models.lm import LanguageModel
from ragdistill.reader.lm_reader import LMReader, clean_answer, write_answers

EXACT = {"precision": "32-true", "accelerator": "cpu"}

QUESTIONS = [
    "who wrote the origin of species?",
    "when did the war end?",
    "what is the capital city of the country that hosted the first modern olympic games in athens?",
    "why?",
]


def _passages(n_words: int, k: int = 2) -> list[Passage]:
    return [Passage(f"p{n_words}-{i}", " ".join(["river", "stone", "light"] * n_words), f"Title {i}") for i in range(k)]


# Prompts of clearly different lengths, so batches mix long and short rows (padding is exercised).
PASSAGES = [_passages(3), _passages(20), _passages(1, k=1), _passages(9, k=3)]


@pytest.fixture(scope="module")
def tiny_llama(bert_tokenizer, build_tiny_llama) -> LanguageModel:
    return LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="tiny-llama")


@pytest.fixture(scope="module")
def small_window_llama(bert_tokenizer) -> LanguageModel:
    """A tiny Llama that reads 64 positions at most, so truncation is needed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bert_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=bert_tokenizer.pad_token_id,
    )
    return LanguageModel.from_objects(LlamaForCausalLM(config), bert_tokenizer, name="small-window")


def test_answers_come_back_in_question_order_and_do_not_depend_on_the_batch(tiny_llama):
    reader = LMReader(tiny_llama, max_new_tokens=6, **EXACT)
    batched = reader.answer(QUESTIONS, PASSAGES)
    alone = [reader.answer([q], [ps])[0] for q, ps in zip(QUESTIONS, PASSAGES, strict=True)]
    assert batched == alone
    assert len(set(batched)) > 1  # the questions get different answers, so an order mix-up would show
    one_per_batch = LMReader(tiny_llama, max_new_tokens=6, max_batch_size=1, **EXACT).answer(QUESTIONS, PASSAGES)
    assert one_per_batch == batched


def test_right_padding_would_change_a_short_prompts_answer(tiny_llama):
    """Guards the test above: on this model the classic right-padding bug does change the answers."""
    reader = LMReader(tiny_llama, max_new_tokens=6, **EXACT)
    rows = [reader.build_prompt(q, ps).ids for q, ps in zip(QUESTIONS, PASSAGES, strict=True)]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    wrong = tiny_llama.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=6)
    short = min(range(len(rows)), key=lambda i: len(rows[i]))
    right = tiny_llama.model.generate(input_ids=torch.tensor([rows[short]]), do_sample=False, max_new_tokens=6)
    assert wrong[short, width:].tolist() != right[0, len(rows[short]) :].tolist()


def test_left_pad_puts_every_last_token_in_the_last_column():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_long_passages_are_cut_so_the_prompt_fits_the_window(small_window_llama):
    reader = LMReader(small_window_llama, max_new_tokens=8, **EXACT)
    assert reader.prompt_budget == 64 - 8
    long = [Passage(f"p{i}", "river stone light " * 100, f"Title {i}") for i in range(3)]
    prompt = reader.build_prompt("who?", long)
    assert len(prompt.ids) <= 56
    assert prompt.passages == 1 and prompt.cut == 1  # the first passage is cut, the next ones are left out
    text = small_window_llama.tokenizer.decode(prompt.ids)
    assert "title 0" in text and "title 1" not in text and text.endswith("question : who? answer :")
    answers = reader.answer(["who?"], [long])  # generation stays inside the window
    assert len(answers) == 1


def test_each_passage_keeps_at_most_max_passage_tokens(tiny_llama):
    reader = LMReader(tiny_llama, max_passage_tokens=5, **EXACT)
    passages = [Passage(f"p{i}", "river stone light " * 50, f"Title {i}") for i in range(3)]
    prompt = reader.build_prompt("who?", passages)
    assert prompt.passages == 3 and prompt.cut == 3
    text = tiny_llama.tokenizer.decode(prompt.ids)
    assert text.count("title :") == 3 and text.count("river") == 6  # 5 tokens each: river stone light river stone


def test_a_question_that_cannot_fit_is_a_clear_error(tiny_llama):
    reader = LMReader(tiny_llama, max_prompt_tokens=12, **EXACT)
    with pytest.raises(ValueError, match="without any passage, over the budget of 12"):
        reader.answer(["why " * 30], [_passages(1)])


def test_the_chat_template_wraps_the_prompt(make_bert_tokenizer, build_tiny_llama):
    tokenizer = make_bert_tokenizer()
    user = "{% for m in messages %}[user] {{ m['content'] }} [end]{% endfor %}"
    tokenizer.chat_template = user + "{% if add_generation_prompt %} [bot]{% endif %}"
    lm = LanguageModel.from_objects(build_tiny_llama(tokenizer), tokenizer, name="chat")
    prompt = LMReader(lm, **EXACT).build_prompt("who?", _passages(1))
    prefix, suffix = lm.chat_wrap() or ("", "")
    head = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    tail = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    assert prompt.ids[: len(head)] == head and prompt.ids[-len(tail) :] == tail


def test_encoder_decoder_readers_answer_too(bert_tokenizer, build_tiny_t5):
    lm = LanguageModel.from_objects(build_tiny_t5(bert_tokenizer), bert_tokenizer, name="tiny-t5")
    reader = LMReader(lm, max_new_tokens=4, **EXACT)
    batched = reader.answer(QUESTIONS, PASSAGES)
    assert batched == [reader.answer([q], [ps])[0] for q, ps in zip(QUESTIONS, PASSAGES, strict=True)]


@pytest.mark.parametrize(
    ("generated", "answer"),
    [
        ("Paris\nQuestion: what is", "Paris"),
        (" Charles Darwin.  \n\nPassage:", "Charles Darwin."),
        ("\n\n  1859 \n", "1859"),  # a leading newline does not empty the answer
        ("", ""),
        ("  \n ", ""),
    ],
)
def test_the_answer_is_the_first_line_stripped(generated, answer):
    assert clean_answer(generated) == answer


def test_generation_stops_once_a_row_has_a_newline_after_its_answer():
    class CharTokenizer:
        def batch_decode(self, rows, skip_special_tokens=True):
            return ["".join(chr(i) for i in row) for row in rows.tolist()]

    prompt = [ord(c) for c in "Q?"]
    rows = torch.tensor([[*prompt, *map(ord, generated)] for generated in ("\na", "a\n", "ab")])
    assert NewlineStop(CharTokenizer(), start=2)(rows, None).tolist() == [False, True, False]


def test_unknown_prompt_fields_are_named():
    with pytest.raises(ValueError, match=r"unknown keys \['passages'\]"):
        LMReader.__init__(object.__new__(LMReader), None, prompt={"passages": "{text}"})  # type: ignore[arg-type]


def test_the_jsonl_has_one_record_per_question(tmp_path):
    questions = [
        Question("q1", "who wrote it?", answers=("Charles Darwin", "Darwin")),
        Question("q2", "when?", answers=("1859",)),
        Question("q3", "no gold?"),
    ]
    retrieved = [
        [Passage("a", "On the Origin of Species, by Charles Darwin."), Passage("b", "unrelated")],
        [Passage("c", "It was published in 18590.")],  # "1859" inside a longer number is no hit
        [],
    ]
    path = tmp_path / "reader" / "answers.jsonl"
    records = write_answers(path, questions, retrieved, ["darwin", "in 1859", "x"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == records and len(lines) == 3
    assert set(lines[0]) == {"qid", "question", "retrieved_ids", "answer", "gold_answers", "em", "f1", "hit"}
    assert lines[0] == {
        "qid": "q1",
        "question": "who wrote it?",
        "retrieved_ids": ["a", "b"],
        "answer": "darwin",
        "gold_answers": ["Charles Darwin", "Darwin"],
        "em": 1.0,
        "f1": 1.0,
        "hit": True,
    }
    assert lines[1]["em"] == 0.0 and lines[1]["f1"] == pytest.approx(2 / 3) and lines[1]["hit"] is False
    assert lines[2]["em"] is None and lines[2]["f1"] is None and lines[2]["hit"] is False
    with pytest.raises(ValueError, match="3 questions, 2 passage lists"):
        write_answers(path, questions, retrieved[:2], ["a", "b", "c"])


PEAR_SMALL = {"n_heads": 2, "sequences": 3, "length": 6, "steps": 3}


def test_pear_reader_folds_the_cached_coefficients_once_and_reports_them(bert_tokenizer, build_tiny_llama, tmp_path):
    from ragdistill.reader.pear import PearSettings, apply_pear, run_pear

    plain = LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="plain")
    edited = LanguageModel.from_objects(build_tiny_llama(bert_tokenizer), bert_tokenizer, name="edited")
    before = edited.fingerprint()
    reader = LMReader(edited, **EXACT, pear=True, pear_settings=PEAR_SMALL, cache_dir=str(tmp_path))
    answers = reader.answer(QUESTIONS, PASSAGES)
    result = reader.pear_result
    assert result is not None and not result.reused and (result.directory / "coefficients.json").exists()
    assert edited.fingerprint() != before  # caches keyed by the LM see the re-weighted weights as new
    assert reader.metrics()["pear/heads"] == len(result.heads) >= 1

    # the same settings reuse the cache, and folding by hand gives the reader's answers
    again = run_pear(plain, PearSettings(**PEAR_SMALL), cache_dir=tmp_path)
    assert again.reused and again.coefficients == result.coefficients
    apply_pear(plain, again)
    assert LMReader(plain, **EXACT).answer(QUESTIONS, PASSAGES) == answers
    reader.answer(QUESTIONS[:1], PASSAGES[:1])
    assert reader.pear_result is result  # folded once, not again per call


def test_pear_settings_with_an_unknown_name_are_refused(tiny_llama):
    with pytest.raises(ValueError, match=r"unknown PEAR settings \['heads'\]; known: \['n_heads'"):
        LMReader(tiny_llama, pear=True, pear_settings={"heads": 4})
