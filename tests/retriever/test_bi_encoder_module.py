import functools
import itertools
import json

import numpy as np
import pytest
import torch

from ragdistill.data.distillation_datamodule import collate_groups
from ragdistill.losses import InfoNCELoss
from ragdistill.retriever.bi_encoder_module import BiEncoderModule
from ragdistill.retriever.encode import EncodeSettings, encode_texts
from ragdistill.retriever.export import export_sentence_transformers
from ragdistill.retriever.schedule import linear_warmup_decay
from ragdistill.utils.manifest import CorruptArtifactError

FP32 = EncodeSettings(precision="32-true")


def _batch():
    items = []
    for i in range(3):
        items.append(
            {
                "qid": f"q{i}",
                "query": f"question number {i}",
                "pids": [f"gold{i}", f"neg{i}"],
                "passages": [f"the answer to question {i}", f"unrelated text {i}"],
                "teacher_scores": [1.0, 0.0],
                "positive_mask": [True, False],
                "group_mask": [True, True],
                "positive_ids": {f"gold{i}"},
            }
        )
    return collate_groups(items)


def _module(path, **kwargs):
    return BiEncoderModule(
        path=str(path),
        loss=InfoNCELoss(),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        **kwargs,
    )


@pytest.mark.parametrize("in_batch", [True, False])
def test_training_step_gives_a_finite_loss_with_gradients(tiny_encoder_dir, in_batch):
    module = _module(tiny_encoder_dir, in_batch_negatives=in_batch)
    module.log = lambda *args, **kwargs: None
    loss = module.training_step(_batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_separate_towers_export_and_reload_exactly(tiny_encoder_dir, tmp_path):
    module = _module(tiny_encoder_dir, shared_towers=False, pooling="cls", normalize=False).eval()
    assert module.query_encoder is not module.passage_encoder
    with torch.no_grad():
        module.query_encoder.embeddings.word_embeddings.weight.add_(0.5)  # make the towers differ
    export_sentence_transformers(module, tmp_path / "retriever")
    assert (tmp_path / "retriever" / "query" / "modules.json").exists()
    assert not (tmp_path / "retriever.tmp").exists()
    reloaded = BiEncoderModule(path=str(tmp_path / "retriever"))  # the folder's settings win over the defaults
    texts = ["a question", "another longer question here"]
    for kind in ("query", "passage"):
        ours = encode_texts(module, texts, kind, settings=FP32)
        again = encode_texts(reloaded, texts, kind, settings=FP32)
        np.testing.assert_allclose(ours, again, atol=1e-5)
    assert not np.allclose(
        encode_texts(module, texts, "query", settings=FP32),
        encode_texts(module, texts, "passage", settings=FP32),
    )


@pytest.mark.parametrize("tower", ["query", "passage"])
def test_a_damaged_export_is_refused_naming_the_file(tiny_encoder_dir, tmp_path, tower):
    module = _module(tiny_encoder_dir, shared_towers=False)
    export_sentence_transformers(module, tmp_path / "retriever")
    assert "query/model.safetensors" in json.loads((tmp_path / "retriever" / "manifest.json").read_text())["files"]
    weights = tmp_path / "retriever" / tower / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=rf"{tower}/model\.safetensors fails its checksum.*export it again"):
        BiEncoderModule(path=str(tmp_path / "retriever"))


def test_encode_keeps_input_order_and_handles_empty(tiny_encoder_dir):
    module = _module(tiny_encoder_dir)
    texts = ["short", "a much much longer text than the others", "mid length text"]
    vectors = encode_texts(module, texts, "passage", settings=EncodeSettings(batch_size=2, precision="32-true"))
    with torch.no_grad():
        direct = module.eval().encode_passages(texts).numpy()
    np.testing.assert_allclose(vectors, direct, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encode_texts(module, [], "query").shape == (0, 32)
    with pytest.raises(ValueError, match="kind must be"):
        encode_texts(module, texts, "document")


def test_bad_settings_fail_at_construction(tiny_encoder_dir):
    with pytest.raises(ValueError, match="pooling"):
        BiEncoderModule(path=str(tiny_encoder_dir), pooling="max")
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0)


def test_warmup_then_linear_decay():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = linear_warmup_decay(optimizer, total_steps=10, warmup_ratio=0.2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.125) and all(a >= b for a, b in itertools.pairwise(rates[1:]))


def _gradients(module, seed=0):
    """One training step's gradients from a fixed RNG state (dropout on)."""
    module.log = lambda *args, **kwargs: None
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    module.training_step(_batch(), 0).backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_plain_steps_gradients(tiny_encoder_dir):
    """Recomputed activations replay the same dropout masks: checkpointing trades time for memory, nothing else."""
    plain = _gradients(_module(tiny_encoder_dir))
    checkpointed = _gradients(_module(tiny_encoder_dir, gradient_checkpointing=True))
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    other_seed = _gradients(_module(tiny_encoder_dir), seed=1)  # the comparison can tell dropout masks apart
    assert any(not torch.allclose(other_seed[n], plain[n]) for n in plain)


def test_training_uses_eager_attention_and_gives_the_model_back_its_own(tiny_encoder_dir):
    """Eager attention while training with dropout (SDPA's CPU fallback is slower and larger), SDPA elsewhere."""
    module = _module(tiny_encoder_dir)
    config = module.passage_encoder.config
    assert config._attn_implementation == "sdpa" and config.attention_probs_dropout_prob > 0
    module.eval()
    with torch.no_grad():  # the same function either way: without dropout the two paths agree
        texts = ["a question about attention", "a longer passage that pads the other one out a bit"]
        sdpa = module.encode_passages(texts)
        module.use_training_attention(True)
        assert config._attn_implementation == "eager"
        eager = module.encode_passages(texts)
    torch.testing.assert_close(eager, sdpa, rtol=1e-4, atol=1e-5)
    module.use_training_attention(False)
    assert config._attn_implementation == "sdpa"


def test_every_training_step_runs_eager_also_after_a_validation_inside_fit(tiny_encoder_dir):
    """A mid-epoch validation switches to SDPA and back: no training step may run with the other attention
    (a resumed run would then diverge from an uninterrupted one, whose steps after the validation differed)."""
    import pytorch_lightning as pl

    module = _module(tiny_encoder_dir)
    seen = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(pl_module.passage_encoder.config._attn_implementation)

    from torch.utils.data import DataLoader

    class Batches(torch.utils.data.Dataset):  # one ready batch per item
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return _batch()

    train = DataLoader(Batches(), batch_size=None)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=DataLoader(Batches(), batch_size=None))
    assert seen == ["eager"] * 6
    assert module.passage_encoder.config._attn_implementation == "sdpa"  # encoding after fit: the model's own
