"""What an LM computed is cached under the precision it really ran in, not only the one configured.

On a CPU without bfloat16 a ``bf16-mixed`` teacher runs in float32 (:mod:`ragdistill.runtime.precision`);
those scores differ from the bfloat16 ones another machine makes from the same config, so the two must not
share a cache entry.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragdistill.models.lm import LanguageModel
from ragdistill.models.local_chat import LocalChat
from ragdistill.runtime import precision as precision_module
from ragdistill.runtime.precision import FORCE_ENV, force_cpu_bf16
from ragdistill.teachers.cache import SignalCache
from ragdistill.teachers.llm_ranking import ListwiseRankingTeacher
from ragdistill.teachers.lm_likelihood import LMLikelihoodTeacher

TEACHER_CONFIG = {"_target_": "ragdistill.teachers.lm_likelihood.LMLikelihoodTeacher", "precision": "bf16-mixed"}


@pytest.fixture
def cpu_bf16(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """``cpu_bf16["native"]`` decides whether this machine looks like it has native bfloat16."""
    state = {"native": True}
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: state["native"])
    monkeypatch.delenv(FORCE_ENV, raising=False)
    yield state


def key(tmp_path, identity: dict[str, str]) -> str:
    return SignalCache.from_parts(tmp_path, {"teacher": TEACHER_CONFIG, **identity}).key


def test_a_bf16_teacher_that_falls_back_to_float32_gets_its_own_cache_key(tmp_path, tiny_llama, cpu_bf16) -> None:
    teacher = LMLikelihoodTeacher(tiny_llama, precision="bf16-mixed", accelerator="cpu")
    native = teacher.cache_identity()
    assert native == {"lm": tiny_llama.fingerprint()}  # keys made where bf16 runs stay as they were

    cpu_bf16["native"] = False
    fallback = teacher.cache_identity()
    assert fallback == {"lm": tiny_llama.fingerprint(), "precision": "32-true"}
    assert key(tmp_path, fallback) != key(tmp_path, native)
    with force_cpu_bf16():  # bf16 kept on purpose: the bf16 entry again
        assert key(tmp_path, teacher.cache_identity()) == key(tmp_path, native)


def test_a_float32_teacher_keys_the_same_on_every_cpu(tiny_llama, cpu_bf16) -> None:
    teacher = LMLikelihoodTeacher(tiny_llama, precision="32-true", accelerator="cpu")
    native = teacher.cache_identity()
    cpu_bf16["native"] = False
    assert teacher.cache_identity() == native == {"lm": tiny_llama.fingerprint()}


def test_local_chat_identity_holds_the_precision_it_runs_in(tiny_llama: LanguageModel, cpu_bf16) -> None:
    bf16 = LocalChat(tiny_llama, precision="bf16-mixed", accelerator="cpu")
    fp32 = LocalChat(tiny_llama, precision="32-true", accelerator="cpu")
    assert bf16.identity()["precision"] == "bf16-mixed" and fp32.identity()["precision"] == "32-true"
    cpu_bf16["native"] = False  # generated units (G2R) made in the fallback are the float32 ones
    assert bf16.identity() == fp32.identity()


def test_a_listwise_teacher_keys_on_its_local_chat_and_on_nothing_for_an_endpoint(tiny_llama, cpu_bf16) -> None:
    chat = LocalChat(tiny_llama, precision="bf16-mixed", accelerator="cpu")
    assert ListwiseRankingTeacher(chat).cache_identity() == chat.identity()

    class Endpoint:  # an API client: no local LM; base_url and model are in the teacher's config
        def complete_many(self, requests, description="", **params):  # pragma: no cover - never called
            raise AssertionError

    assert ListwiseRankingTeacher(Endpoint()).cache_identity() == {}
