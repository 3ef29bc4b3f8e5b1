import pytest

from ragdistill.candidates.dense import DenseCandidates
from ragdistill.data.schemas import Passage, Question
from ragdistill.retriever.bi_encoder_module import BiEncoderModule


def test_dense_candidates_rank_an_identical_text_first(tiny_encoder_dir):
    corpus = [Passage(f"p{i}", text) for i, text in enumerate(["alpha beta", "gamma delta epsilon", "zeta"])]
    generator = DenseCandidates(k=2, precision="32-true", accelerator="cpu").fit(
        corpus, retriever=BiEncoderModule(path=str(tiny_encoder_dir))
    )
    ranked = generator.retrieve([Question("q", "gamma delta epsilon")])
    assert ranked["q"].ids[0] == "p1" and len(ranked["q"].ids) == 2


def test_dense_candidates_need_a_retriever():
    with pytest.raises(ValueError, match="needs a retriever"):
        DenseCandidates().fit([Passage("p", "x")])
    with pytest.raises(RuntimeError, match="before fit"):
        DenseCandidates().retrieve([Question("q", "x")])


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_dense_candidates_on_an_engine_rank_as_on_pytorch(tiny_encoder_dir, tmp_path, backend):
    corpus = [Passage(f"p{i}", text) for i, text in enumerate(["alpha beta", "gamma delta epsilon", "zeta", "eta"])]
    questions = [Question("q0", "gamma delta"), Question("q1", "alpha"), Question("q2", "zeta eta")]
    retriever = BiEncoderModule(path=str(tiny_encoder_dir))
    settings = {"k": 4, "precision": "32-true", "accelerator": "cpu", "progress": False}
    on_torch = DenseCandidates(**settings).fit(corpus, retriever=retriever).retrieve(questions)
    engine = DenseCandidates(**settings, encode_backend=backend, export_dir=str(tmp_path))
    on_engine = engine.fit(corpus, retriever=retriever).retrieve(questions)
    assert all(on_engine[q.id].ids == on_torch[q.id].ids for q in questions)
    assert len(list(tmp_path.iterdir())) == 1  # the export, made once


def test_an_unknown_engine_is_named_by_its_candidates_key():
    with pytest.raises(ValueError, match=r"^candidates\.encode_backend must be one of"):
        DenseCandidates(encode_backend="tensorrt")
