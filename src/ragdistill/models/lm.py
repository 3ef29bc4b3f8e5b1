"""A lazily loaded language model (teacher, reader, black-box ranker) that teachers and readers share.

A reference is one of:
- ``packaged:<name>``: a GGUF file shipped inside a PyPI package (``make setup`` installs it), the offline default;
  converted once to safetensors in the cache, since a GGUF load takes 14-45 s and a safetensors load
  well under one;
- a local directory: a transformers model folder, or a folder holding a ``.gguf`` named by ``gguf_file``
  (converted once, like the packaged ones); a path to a ``.gguf`` file works too;
- a Hugging Face hub id, passed to ``from_pretrained`` unchanged, for users whose machines reach the hub.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ragdistill.models.gguf_conversion import conversion_problem, convert_gguf
from ragdistill.models.locate import PACKAGED_PREFIX, ModelNotFoundError
from ragdistill.models.packaged_lms import PACKAGED_LMS, PackagedLM
from ragdistill.models.weights_digest import parameters_digest

logger = logging.getLogger(__name__)

LMDtype = Literal["float32", "bfloat16", "float16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")

CHAT_SENTINEL = "<<ragdistill-user-text>>"


@dataclass(frozen=True)
class _Source:
    """Where the weights come from: ``packaged``, ``gguf`` (a local file), ``folder``, ``hub`` or ``objects``."""

    kind: str
    name: str
    location: str = ""  # the folder, the GGUF's folder or the hub id
    gguf_file: str | None = None
    packaged: PackagedLM | None = None


def _resolve(path: str, gguf_file: str | None) -> _Source:
    """Classify ``path`` and check what can be checked without loading anything."""
    if path.startswith(PACKAGED_PREFIX):
        name = path.removeprefix(PACKAGED_PREFIX)
        if name not in PACKAGED_LMS:
            raise ModelNotFoundError(f"unknown packaged LM {name!r}; packaged LMs: {sorted(PACKAGED_LMS)}")
        PACKAGED_LMS[name].installed()
        return _Source("packaged", name, packaged=PACKAGED_LMS[name])
    local = Path(path).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        local, gguf_file = local.parent, local.name
    if local.is_dir():
        if gguf_file is not None:
            if not (local / gguf_file).is_file():
                raise ModelNotFoundError(f"{local} holds no GGUF file {gguf_file!r}")
            return _Source("gguf", Path(gguf_file).stem, str(local.resolve()), gguf_file)
        if not (local / "config.json").exists():
            ggufs = sorted(p.name for p in local.glob("*.gguf"))
            hint = f"; it holds {ggufs}: name one with gguf_file=" if ggufs else ""
            raise ModelNotFoundError(f"{local} is not a model folder (no config.json inside){hint}")
        return _Source("folder", local.resolve().name, str(local.resolve()))
    if local.exists():
        raise ModelNotFoundError(f"{local} is neither a model folder nor a .gguf file")
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise ModelNotFoundError(f"LM folder {path!r} does not exist")
    return _Source("hub", path, path, gguf_file)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _folder_signature(folder: Path, only: str | None = None) -> list[str]:
    """config.json's text and each weight file's name, size and mtime (just ``only``'s when given)."""
    config = folder / "config.json"
    parts = [config.read_text() if config.exists() else "no config.json"]
    for file in sorted(folder.iterdir()):
        if file.name.endswith(WEIGHT_SUFFIXES) and (only is None or file.name == only):
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return parts


def _millions(n: int) -> str:
    return f"{n / 1e6:.0f}M" if n >= 10_000_000 else f"{n / 1e6:.2g}M"


class LanguageModel:
    """Hold a language model and its tokenizer, loaded on first use and frozen (eval mode, no gradients).

    Nothing loads in the constructor, so a run whose teacher signals are all cached never pays for a
    load; ``fingerprint()`` identifies the weights for those caches without loading them.

    Args:
        path: ``packaged:SmolLM2-135M-Instruct``, ``packaged:gemma-3-270m``, a local folder (a transformers
            model folder, or one holding a ``.gguf`` named by ``gguf_file``), a ``.gguf`` file, or a hub id.
        gguf_file: The GGUF file inside ``path`` (a folder or a hub repository).
        dtype: ``float32``, ``bfloat16`` or ``float16``: the dtype the weights are loaded in.
        cache_dir: Where GGUF files are converted to safetensors (``<cache_dir>/models/<name>-<hash>``).
        trust_remote_code: Passed to ``from_pretrained`` for hub models with custom code.
        use_chat_template: Wrap prompts in the tokenizer's chat template (``chat_wrap``); off for base models.

    Raises:
        ValueError: For an unknown ``dtype``.
        ModelNotFoundError: For an unknown packaged name, a missing package (the message holds the pip
            command) or a missing folder.

    Relations:
        ``ragdistill.models.locate`` resolves retriever backbones the same way (``packaged:``, folder, hub id).
    """

    served: ClassVar[bool] = False
    """Whether the weights are behind an endpoint (:class:`~ragdistill.models.served_lm.ServedLanguageModel`)."""

    def __init__(
        self,
        path: str = "packaged:SmolLM2-135M-Instruct",
        gguf_file: str | None = None,
        dtype: LMDtype = "float32",
        cache_dir: str = ".cache/ragdistill",
        trust_remote_code: bool = False,
        use_chat_template: bool = True,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.path = path
        self.gguf_file = gguf_file
        self.dtype: str = dtype  # a from_objects LM may hold any torch dtype
        self.cache_dir = Path(cache_dir)
        self.trust_remote_code = trust_remote_code
        self.use_chat_template = use_chat_template
        self._source = _resolve(path, gguf_file)
        self.weight_edits: list[str] = []
        self._model: nn.Module | None = None
        self._tokenizer: Any = None
        self._config: Any = None

    @classmethod
    def from_objects(cls, model: nn.Module, tokenizer: Any, name: str = "custom") -> LanguageModel:
        """Wrap an already built model and tokenizer (tests, notebooks); the model is put in eval mode, frozen.

        Args:
            model: A transformers ``PreTrainedModel`` (causal or encoder-decoder).
            tokenizer: Its tokenizer; a missing pad token is set to the eos token.
            name: Shown in log lines.
        """
        lm = cls.__new__(cls)
        dtype = next(model.parameters()).dtype
        lm.path = f"<objects:{name}>"
        lm.gguf_file = None
        lm.dtype = str(dtype).removeprefix("torch.")
        lm.cache_dir = Path(".cache/ragdistill")
        lm.trust_remote_code = False
        lm.use_chat_template = True
        lm._source = _Source("objects", name)
        lm.weight_edits = []
        lm._model = model.eval().requires_grad_(False)
        lm._tokenizer = _prepare_tokenizer(tokenizer)
        lm._config = getattr(model, "config", None)
        return lm

    def __repr__(self) -> str:
        return f"LanguageModel(path={self.path!r}, dtype={self.dtype!r}, loaded={self._model is not None})"

    @property
    def name(self) -> str:
        """A short human-readable name (packaged name, folder or GGUF file name, or hub id)."""
        return self._source.name

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def model(self) -> nn.Module:
        """The model in eval mode with gradients off, loaded on first access."""
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

            model_class = AutoModelForSeq2SeqLM if self.is_encoder_decoder else AutoModelForCausalLM
            location, extra = self._load_location()
            start = time.perf_counter()
            model = model_class.from_pretrained(
                location, dtype=DTYPES[self.dtype], trust_remote_code=self.trust_remote_code, **extra
            )
            self._model = model.eval().requires_grad_(False)
            self._config = model.config
            n = sum(p.numel() for p in model.parameters())
            logger.info(
                "Loaded LM <%s> (%s params, %s) in %.1f s",
                self.name,
                _millions(n),
                self.dtype,
                time.perf_counter() - start,
            )
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, right padding, pad token = eos token when it has none."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            location, extra = self._load_location()
            self._tokenizer = _prepare_tokenizer(
                AutoTokenizer.from_pretrained(location, trust_remote_code=self.trust_remote_code, **extra)
            )
        return self._tokenizer

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether the model is encoder-decoder (T5/FiD-style), read from its config without loading weights.

        A GGUF source is converted first (once per machine): its config lives inside the GGUF file.
        """
        if self._config is None:
            from transformers import AutoConfig

            location, extra = self._load_location()
            self._config = AutoConfig.from_pretrained(location, trust_remote_code=self.trust_remote_code, **extra)
        return bool(getattr(self._config, "is_encoder_decoder", False))

    def record_weight_edit(self, edit: str) -> None:
        """Note that the loaded weights were changed in place (e.g. PEAR's folded coefficients).

        :meth:`fingerprint`, and so every cache keyed by it, then tells the edited LM from the one on disk.
        """
        self.weight_edits.append(edit)

    def fingerprint(self) -> str:
        """A hash identifying the weights as loaded (source and dtype) and edited; teacher caches key on it.

        Packaged: package names and versions. Local folder: config.json and each weight file's name, size
        and mtime (a re-trained reader at the same path gets a new fingerprint). Hub id: the id.
        ``from_objects``: the config and a hash of the parameters. Edits noted by :meth:`record_weight_edit`
        are hashed in after the source.
        """
        loaded = self._loaded_fingerprint()
        return _digest(loaded, *self.weight_edits) if self.weight_edits else loaded

    def _loaded_fingerprint(self) -> str:
        source = self._source
        if source.kind == "packaged":
            assert source.packaged is not None
            return _digest("packaged", source.name, *source.packaged.installed(), self.dtype)
        if source.kind in ("folder", "gguf"):
            return _digest(source.kind, *_folder_signature(Path(source.location), source.gguf_file), self.dtype)
        if source.kind == "hub":
            return _digest("hub", source.location, str(source.gguf_file), self.dtype)
        assert self._model is not None
        return _digest("objects", parameters_digest(self._model))

    def chat_wrap(self, user_text_placeholder: str = CHAT_SENTINEL) -> tuple[str, str] | None:
        """The (prefix, suffix) the chat template puts around one user message, ending with the generation prompt.

        Teachers build prompts from pieces: ``prefix + user_text + suffix`` then the answer.

        Args:
            user_text_placeholder: A string that appears nowhere in the template; it stands for the user text.

        Returns:
            ``(prefix, suffix)``, or ``None`` when ``use_chat_template`` is off or the tokenizer has no
            chat template.

        Raises:
            ValueError: If the template does not render the placeholder exactly once.
        """
        if not self.use_chat_template or not getattr(self.tokenizer, "chat_template", None):
            return None
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text_placeholder}], tokenize=False, add_generation_prompt=True
        )
        pieces = str(text).split(user_text_placeholder)
        if len(pieces) != 2:
            raise ValueError(
                f"the chat template of {self.name} renders the user text {len(pieces) - 1} times, expected once"
            )
        return pieces[0], pieces[1]

    def _load_location(self) -> tuple[str, dict[str, Any]]:
        """What to pass to ``from_pretrained``: a folder (converted from GGUF if need be) or a hub id."""
        source = self._source
        if source.kind == "packaged":
            assert source.packaged is not None
            key = _digest(*source.packaged.installed())
            return str(self._converted(source.name, key, source.packaged.gguf)), {}
        if source.kind == "gguf":
            gguf = Path(source.location) / str(source.gguf_file)
            stat = gguf.stat()
            key = _digest(str(gguf), str(stat.st_size), str(stat.st_mtime_ns))
            return str(self._converted(source.name, key, lambda _scratch: gguf)), {}
        if source.kind == "hub" and source.gguf_file is not None:
            logger.info("Loading GGUF %s from hub repo <%s> (not cached as safetensors)", source.gguf_file, source.name)
            return source.location, {"gguf_file": source.gguf_file}
        return source.location, {}

    def _converted(self, name: str, key: str, gguf: Callable[[Path], Path]) -> Path:
        """The safetensors folder converted from ``gguf``, converting it (again, if broken) when needed."""
        target = self.cache_dir / "models" / f"{name}-{key[:10]}"
        if target.exists():
            problem = conversion_problem(target)
            if problem is None:
                return target
            logger.warning("Converted LM folder <%s> is incomplete or corrupt (%s); converting again", target, problem)
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".gguf-", dir=target.parent) as scratch:
            convert_gguf(gguf(Path(scratch)), target)
        return target


def _prepare_tokenizer(tokenizer: Any) -> Any:
    """Right padding; a pad token (the eos token) where the tokenizer has none. Touches the tokenizer only."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            logger.warning("Tokenizer of %s has neither a pad nor an eos token; batches cannot be padded", tokenizer)
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


__all__ = ["PACKAGED_LMS", "LanguageModel", "ModelNotFoundError", "PackagedLM"]
