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
