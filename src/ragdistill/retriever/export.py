"""Export a trained bi-encoder as a sentence-transformers folder anyone can load with ``SentenceTransformer(path)``."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import PreTrainedModel

from ragdistill.retriever.bi_encoder_module import ARCHITECTURE_KEYS, SETTINGS_FILE, BiEncoderModule
from ragdistill.runtime.distributed import is_global_zero
from ragdistill.utils.manifest import write_manifest

logger = logging.getLogger(__name__)


def _save_tower(encoder: PreTrainedModel, retriever: BiEncoderModule, max_length: int, out: Path) -> None:
    with tempfile.TemporaryDirectory() as staging:
        encoder.save_pretrained(staging)
        retriever.tokenizer.save_pretrained(staging)
        modules = [
            Transformer(staging, max_seq_length=max_length),
            Pooling(retriever.embedding_dim, pooling_mode=retriever.hparams["pooling"]),
        ]
        if retriever.hparams["normalize"]:
            modules.append(Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(out))


def export_sentence_transformers(retriever: BiEncoderModule, out_dir: str | Path) -> Path:
    """Write the retriever to ``out_dir`` (replaced atomically) and return the path.

    A shared-tower retriever becomes one sentence-transformers folder; a two-tower one gets ``query/`` and
    ``passage/`` folders. ``ragdistill.json`` keeps what the format cannot (towers, prefixes, query length),
    and :class:`BiEncoderModule` reads it back, so ``retriever.path=<out_dir>`` encodes exactly as this one did.
    The folder is written beside ``out_dir`` first and swapped in only once complete. Only global rank 0
    writes: the ranks of a DDP run hold the same weights and share the run dir.
    """
    out = Path(out_dir)
    if not is_global_zero():
        return out
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    hp = retriever.hparams
    if hp["shared_towers"]:
        _save_tower(retriever.passage_encoder, retriever, hp["passage_max_length"], staging)
    else:
        _save_tower(retriever.query_encoder, retriever, hp["query_max_length"], staging / "query")
        _save_tower(retriever.passage_encoder, retriever, hp["passage_max_length"], staging / "passage")
    settings = {key: hp[key] for key in (*ARCHITECTURE_KEYS, "query_max_length", "passage_max_length")}
    (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    write_manifest(staging)  # BiEncoderModule checks it when loading the folder: a damaged export is refused
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    logger.info("Exported retriever to <%s> (sentence-transformers folder)", out)
    return out
