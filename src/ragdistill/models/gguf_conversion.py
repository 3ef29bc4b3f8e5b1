"""Convert a GGUF language model once to a float32 safetensors folder, and check such a folder before loading it.

A GGUF load through transformers dequantises every tensor (14-45 s); a safetensors load takes well under a
second, so each GGUF is converted once into the cache. The folder is written aside and renamed into place,
ends with :data:`CONVERSION_FILE` and a manifest, and is checked at each load: a truncated or corrupted
conversion is found and redone, never loaded.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
import time
from pathlib import Path

import torch

from ragdistill.utils.manifest import MANIFEST_FILE, artifact_problem, write_manifest

logger = logging.getLogger(__name__)

CONVERSION_FILE = "ragdistill_conversion.json"
"""Written last into a converted GGUF folder: the source and every file's size, checked at each load."""


def safetensors_problem(file: Path) -> str | None:
    """Why a safetensors file cannot be whole (header unreadable, or data shorter than the header says)."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{file.name} is empty"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            return f"{file.name} is truncated (header)"
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{file.name} has an unreadable header"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        return f"{file.name} is {size} bytes, its header describes {8 + header_len + end}"
    return None


def conversion_problem(folder: Path) -> str | None:
    """Why a converted folder cannot be loaded, or ``None`` when it is complete.

    Folders converted since manifests exist are checked file by file against their sha256 (~1 s per GB);
    older ones by size and safetensors header only.
    """
    if (folder / MANIFEST_FILE).exists() and (problem := artifact_problem(folder, required=[CONVERSION_FILE])):
        return problem
    try:
        files: dict[str, int] = json.loads((folder / CONVERSION_FILE).read_text())["files"]
        json.loads((folder / "config.json").read_text())
        for name, size in files.items():
            file = folder / name
            if not file.is_file() or file.stat().st_size != size:
                return f"{name} is missing or not {size} bytes"
            if name.endswith(".safetensors") and (problem := safetensors_problem(file)):
                return problem
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        return f"{type(error).__name__}: {error}"
    if not any(name.endswith(".safetensors") for name in files):
        return "no .safetensors file"
    return None


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` to a float32 safetensors folder at ``target`` (written aside, renamed into place)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    logger.info("Converting <%s> to safetensors in <%s> (once)", gguf, target)
    start = time.perf_counter()
    # GGUF holds only built-in architectures: never run code from beside the file
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = model_class.from_pretrained(
        gguf.parent, gguf_file=gguf.name, config=config, dtype=torch.float32, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    # transformers 5.x refuses to save a model flagged as quantised; the weights are plain floats by now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if not (staging / "generation_config.json").exists():
            model.generation_config.save_pretrained(staging)
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
        record = {"source": str(gguf), "files": files}
        (staging / CONVERSION_FILE).write_text(json.dumps(record, indent=2))
        write_manifest(staging)  # sha256 of every file: a flipped byte in the weights is caught on load too
        try:
            staging.rename(target)
        except OSError:
            if conversion_problem(target) is not None:
                raise
            logger.info("Another process converted <%s> first; using its folder", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Converted <%s> in %.1f s", gguf.name, time.perf_counter() - start)
