"""Check a composed config against the signatures of the classes it builds, before any work starts.

The constructors' type hints are the schema: a key the target does not take, or a value of the wrong
type, fails at once with the key's full path, what was expected and the valid keys, instead of as a
``TypeError`` deep inside a run after the data has loaded. Limits the hints cannot say (``batch_size >= 1``,
an index ``kind`` among three) come from :func:`documented_constraints`, so an out-of-range value fails
here too rather than in the middle of training, or after it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import operator
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf

from ragdistill.utils.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Bound:
    """A limit on a number, carried by an ``Annotated`` hint: ``Annotated[int, Bound(">=", 1)]``.

    NaN fits no bound, as every comparison with it is false.
    """

    op: Literal[">", ">=", "<", "<="]
    limit: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` is within this limit."""
        return bool(_COMPARE[self.op](value, self.limit))

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


def at_least(limit: float, base: type = int) -> Any:
    """The hint of a number ``>= limit`` (an ``int`` unless ``base`` says otherwise)."""
    return Annotated[base, Bound(">=", limit)]


def one_of(values: Iterable[Any]) -> Any:
    """The hint of a value among ``values`` (a ``Literal`` built from a module's own list of them)."""
    return Literal.__getitem__(tuple(values))


POSITIVE: Any = Annotated[float, Bound(">", 0)]
FRACTION: Any = Annotated[float, Bound(">=", 0), Bound("<=", 1)]


def _trainer_precision() -> Any:
    """What ``pytorch_lightning.Trainer(precision=...)`` accepts, which every ``precision`` key ends up in."""
    import pytorch_lightning as pl

    return typing.get_type_hints(pl.Trainer.__init__)["precision"]


@functools.cache
def documented_constraints() -> dict[str, dict[str, Any]]:
    """Limits that constructors document and check, keyed by the path of the class or function taking them.

    Each entry restates a check the class makes when it is built (or a library makes deep inside a run),
    so that the value fails before any data loads or model is built. A rule on a base class holds for
    its subclasses. The lists of choices are read from the modules that define them.
    """
    from ragdistill.candidates.bm25 import BM25_METHODS
    from ragdistill.index.faiss_index import KINDS, METRICS
    from ragdistill.models.lm import DTYPES
    from ragdistill.retriever.pooling import POOLING_MODES

    precision = _trainer_precision() | None
    lm_batches = {"max_batch_tokens": at_least(1), "max_batch_size": at_least(1), "precision": precision}
    sample_sizes = {"n_train": at_least(0) | None, "n_eval": at_least(0) | None}
    return {
        "ragdistill.data.fixture.load_fixture": sample_sizes,
        "ragdistill.data.jsonl.load_jsonl_data": sample_sizes,
        "ragdistill.data.squad.load_squad_open": sample_sizes,
        "ragdistill.data.beir.load_beir": sample_sizes,
        "ragdistill.data.dpr.load_dpr": sample_sizes,
        "ragdistill.data.msmarco.load_msmarco": sample_sizes,
        "ragdistill.data.datamodule.DistillationDataModule": {
            "batch_size": at_least(1),
            "group_size": at_least(1) | None,
            "val_size": at_least(0),
            "num_workers": at_least(0),
        },
        "ragdistill.candidates.base.CandidateGenerator": {"k": at_least(1)},
        "ragdistill.candidates.bm25.BM25Candidates": {"method": one_of(BM25_METHODS), "batch_size": at_least(1)},
        "ragdistill.candidates.dense.DenseCandidates": {"batch_size": at_least(1), "precision": precision},
        "ragdistill.retriever.bi_encoder.BiEncoder": {"pooling": one_of(POOLING_MODES)},
        "ragdistill.retriever.schedule.linear_warmup_decay": {
            "warmup_ratio": Annotated[float, Bound(">=", 0), Bound("<", 1)]
        },
        "ragdistill.losses.base.TemperatureLoss": {"temperature": POSITIVE},
        "ragdistill.losses.base.SoftTargetLoss": {"tau_student": POSITIVE, "tau_teacher": POSITIVE},
        "ragdistill.losses.margin_mse.MarginMSELoss": {"student_scale": POSITIVE},
        "ragdistill.index.faiss_index.FaissIndex": {
            "kind": one_of(KINDS),
            "metric": one_of(METRICS),
            **{name: at_least(1) for name in ("hnsw_m", "hnsw_ef_search", "ivf_nlist", "pq_m", "nprobe", "shards")},
        },
        "ragdistill.models.lm.LanguageModel": {"dtype": one_of(DTYPES)},
        "ragdistill.models.local_chat.LocalChat": {"max_new_tokens": at_least(1), **lm_batches},
        "ragdistill.models.chat_api.ChatClient": {
            "max_concurrency": at_least(1),
            "timeout_s": POSITIVE,
            "max_retries": at_least(0),
            "backoff_s": at_least(0, float),
            "max_backoff_s": at_least(0, float),
        },
        "ragdistill.teachers.gold.GoldTeacher": {"num_candidates": at_least(1)},
        "ragdistill.teachers.lm_teacher.LMTeacher": {"num_candidates": at_least(1), **lm_batches},
        "ragdistill.teachers.aar.AARTeacher": {
            "top_n": at_least(1),
            "refresh_every_n_steps": at_least(0),
            "mining_depth": at_least(1),
        },
        "ragdistill.teachers.intermediate.IntermediateTeacher": {
            "llm_questions": at_least(2) | None,
            "num_candidates": at_least(2),
            "epochs": at_least(1),
            "batch_size": at_least(1),
            "val_size": at_least(0),
            "precision": precision,
        },
        "ragdistill.teachers.llm_ranking.ListwiseRankingTeacher": {
            "num_candidates": at_least(2),
            "min_valid_fraction": FRACTION,
        },
        "ragdistill.teachers.g2r.G2RTeacher": {"per_question": at_least(0)},
        "ragdistill.reader.lm_reader.LMReader": {
            "max_new_tokens": at_least(1),
            "max_passage_tokens": at_least(1) | None,
            **lm_batches,
        },
    }


@functools.cache
def settings_constraints() -> dict[str, dict[str, Any]]:
    """Limits on groups of plain settings (no ``_target_``), keyed by group.

    The rest of ``evaluation.*`` is checked by :func:`ragdistill.evaluation.retrieval.check_evaluation_settings`.
    """
    return {"evaluation": {"precision": _trainer_precision() | None, "encode_batch_size": at_least(1)}}


def _import(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"_target_ {path!r} cannot be imported: {error}") from None


def _path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _takes_any(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _accepting(target: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Yield the functions whose parameters ``target`` takes, its own first.

    For a class: its ``__init__`` and, while that is one of ours taking ``**kwargs``, the next base's
    (our subclasses forward ``**kwargs`` to ``super().__init__``; a library's may send them anywhere).
    """
    if not inspect.isclass(target):
        yield target
        return
    for cls in target.__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        yield init
        if not (cls.__module__.startswith("ragdistill.") and _takes_any(init)):
            return


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # third-party annotations may not resolve; names are still checked
        return {}


@functools.cache
def _parameters(target: Callable[..., Any]) -> tuple[frozenset[str], dict[str, Any], bool]:
    """``(parameter names, hints with documented limits, whether any keyword goes)`` of ``target``."""
    names: set[str] = set()
    hints: dict[str, Any] = {}
    functions = list(_accepting(target))
    for function in reversed(functions):  # the subclass's hint wins over its base's
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return frozenset(), {}, True
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        hints |= _hints(function)
    owners = reversed(inspect.getmro(target)) if inspect.isclass(target) else [target]
    rules = documented_constraints()
    for owner in owners:
        hints |= {key: hint for key, hint in rules.get(_path(owner), {}).items() if key in names}
    return frozenset(names), hints, _takes_any(functions[-1])


def effective_hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The hint each argument of ``target`` is checked against: its type hint, narrowed by any documented limit."""
    return dict(_parameters(target)[1])


def _literal_values(hint: Any) -> list[Any] | None:
    """The choices of a ``Literal`` or a union of ``Literal`` s (and ``None``); ``None`` for any other hint."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return list(typing.get_args(hint))
    if hint is type(None):
        return [None]
    if origin in (typing.Union, types.UnionType):
        parts = [_literal_values(arg) for arg in typing.get_args(hint)]
        return None if any(p is None for p in parts) else [v for p in parts if p is not None for v in p]
    return None


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; ``None`` where the hint is beyond this simple checker."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        fits = _matches(value, base)
        return fits if fits is not True else all(e.holds(value) for e in extras if isinstance(e, Bound))
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        return True if any(results) else (None if None in results else False)
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (int, str):
        return isinstance(value, hint) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return isinstance(value, list | tuple | ListConfig)
    if origin is dict or hint is dict:
        return isinstance(value, dict | DictConfig)
    return None


def _describe(hint: Any) -> str:
    """``int >= 1``, ``one of ['flat', 'hnsw', 'ivfpq']``, ``float or None``: what a user should write."""
    if hint is type(None):
        return "None"
    choices = _literal_values(hint)
    if choices is not None:
        return f"one of {choices}"
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        return f"{_describe(base)} {' and '.join(str(e) for e in extras if isinstance(e, Bound))}".strip()
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(path: str, value: Any, hint: Any, owner: str) -> None:
    if hint is None or _matches(value, hint) is not False:
        return
    shown = OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value  # as written
    raise ConfigError(f"{path}={shown!r} ({type(shown).__name__}) does not fit {owner}: expected {_describe(hint)}")


def _check_objects_in(node: DictConfig, path: str) -> None:
    """Check the objects a dict of objects holds (a weighted sum's losses, the loggers)."""
    for key, entry in node.items():
        if isinstance(entry, DictConfig) and "_target_" in entry:
            check_node(entry, f"{path}.{key!s}")


def check_node(node: DictConfig, path: str) -> None:
    """Check one ``_target_`` node and, recursively, the nodes inside it.

    Raises:
        ConfigError: On the first key the target does not take, or value that does not fit its hint.
    """
    target = str(node["_target_"])
    parameters, hints, takes_any = _parameters(_import(target))
    for key in map(str, node):
        if key in HYDRA_KEYS:
            continue
        child_path = f"{path}.{key}" if path else key
        if key not in parameters and not takes_any:
            raise ConfigError(f"{child_path}: {target} takes no argument {key!r}; valid keys: {sorted(parameters)}")
        if OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig) and "_target_" in value:
            check_node(value, child_path)
            continue
        if isinstance(value, DictConfig):
            _check_objects_in(value, child_path)
        if isinstance(value, DictConfig | ListConfig) and key not in hints:
            continue
        _check_value(child_path, value, hints.get(key), target)


def _check_settings(node: DictConfig, group: str) -> None:
    for key, hint in settings_constraints().get(group, {}).items():
        if key in node and not OmegaConf.is_missing(node, key):
            _check_value(f"{group}.{key}", node[key], hint, f"the {group} settings")


def check_config(cfg: DictConfig, groups: tuple[str, ...] | None = None) -> None:
    """Check every top-level group (or entries of dict groups like ``logger``) that builds an object.

    Raises:
        ConfigError: On the first key the target does not take or value of the wrong type or out of range.
    """
    for name in groups or tuple(str(k) for k in cfg if k != "hydra"):
        node = cfg.get(name)
        if not isinstance(node, DictConfig):
            continue
        if "_target_" in node:
            check_node(node, name)
            continue
        _check_settings(node, name)
        _check_objects_in(node, name)


# --- the whole run, before any work -------------------------------------------------------------


def check_missing(cfg: DictConfig) -> None:
    """Name every mandatory value (``???``) the run still lacks, all at once.

    OmegaConf raises on the first one it reads, deep inside whichever stage reads it; a user who gives
    ``data=jsonl`` then learns of ``data.corpus_path``, fixes it, and only then of ``data.eval_path``.

    Raises:
        ConfigError: Listing every missing key and how to give one.
    """
    job = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])  # Hydra's own node may not resolve
    missing = sorted(OmegaConf.missing_keys(job))
    if missing:
        given = " ".join(f"{key}=<value>" for key in missing)
        raise ConfigError(f"mandatory values missing: {', '.join(missing)}; give them on the command line: {given}")


def _task_overrides() -> list[str]:
    """The overrides the user typed (Hydra's ``overrides.task``), or none outside a Hydra run or compose."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(override) for override in HydraConfig.get().overrides.task]


def _declared_top_level() -> set[str]:
    """The top-level names ``+name=`` may add: the run's config groups and the primary config file's keys.

    A group chosen on the command line (``+sweep=train_size``) is a whole recipe; a key the primary config
    declares (``+ckpt_path=x``) is only set.
    """
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    hydra = HydraConfig.get()
    declared = {str(group) for group in hydra.runtime.choices}
    for source in hydra.runtime.config_sources:
        primary = Path(str(source.path).removeprefix("file://")) / f"{hydra.job.config_name}.yaml"
        if source.provider == "main" and primary.is_file():
            declared |= {str(key) for key in OmegaConf.load(primary) if key != "defaults"}
    return declared


def check_top_level_keys(cfg: DictConfig, overrides: Iterable[str] | None = None) -> None:
    """Refuse ``+name=value`` (or ``++name=value``) adding a top-level key that nothing reads.

    Hydra lets ``+`` add any key; a nested one is refused by :func:`check_node` because its object does not
    take it, but a new top-level key (``+ckpt_path=...`` before that key existed) was ignored, and the
    run went on as if it had not been typed. Adding a config group (``+sweep=train_size``) stays allowed.

    Raises:
        ConfigError: Naming the override and the top-level keys there are.
    """
    declared = _declared_top_level()
    for override in _task_overrides() if overrides is None else overrides:
        if not override.startswith("+"):
            continue
        key = override.lstrip("+").partition("=")[0]
        if "." in key or "/" in key or "@" in key or key in declared:
            continue
        known = sorted(str(k) for k in cfg if str(k) != "hydra" and str(k) != key)
        raise ConfigError(
            f"{override}: ragdistill reads no top-level key {key!r}, so it would be ignored; "
            f"drop it, or set one of {known} (without '+')"
        )


def check_accelerator(cfg: DictConfig) -> None:
    """Refuse ``trainer.accelerator=gpu`` (``trainer=gpu``) where this process sees no GPU.

    Lightning refuses it too, but only when the trainer is built: after the data has loaded and the first
    stage has run, and as a traceback.

    Raises:
        ConfigError: Naming the key and what to use instead.
    """
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or OmegaConf.is_missing(trainer, "accelerator"):
        return
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator not in ("gpu", "cuda", "mps"):
        return
    import torch

    available = torch.backends.mps.is_available() if accelerator == "mps" else torch.cuda.is_available()
    if not available:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: this machine has no {accelerator.upper()} that torch can use; "
            "use trainer=cpu, or run where one is"
        )


def check_checkpoint(cfg: DictConfig) -> None:
    """Refuse a ``ckpt_path`` that is not a file, before any data loads (Lightning would find out after).

    Raises:
        ConfigError: Naming the key and the path.
    """
    from pathlib import Path

    path = cfg.get("ckpt_path")
    if path is None:
        return
    if not Path(str(path)).is_file():
        raise ConfigError(
            f"ckpt_path={path!r}: no such checkpoint file; give a Lightning .ckpt "
            "(e.g. <run_dir>/checkpoints/*.ckpt) or leave ckpt_path=null to train from the backbone"
        )


def check_optimized_metric(cfg: DictConfig) -> None:
    """Refuse an ``optimized_metric`` that the run's evaluation cannot produce (``recall@500`` with ks up to 100).

    Only names under an evaluation prefix (``test...``, ``val/``) are checked; other figures (``teacher/...``)
    depend on the teacher. With ``evaluate=false`` nothing is evaluated, so nothing can be checked either:
    the run warns at its end, as it did.

    Raises:
        ConfigError: Naming the metric and the ones the run will make.
    """
    from ragdistill.evaluation.retrieval import metric_problem

    name = cfg.get("optimized_metric")
    if not name or not cfg.get("evaluate", True) or not isinstance(cfg.get("evaluation"), DictConfig):
        return
    datamodule = cfg.get("datamodule")
    held_out = bool(datamodule.get("val_size", 0)) if isinstance(datamodule, DictConfig) else False
    if problem := metric_problem(str(name), cfg.evaluation, held_out=held_out):
        raise ConfigError(f"optimized_metric={name!r}: {problem}")


def check_run(cfg: DictConfig) -> None:
    """Everything that can be known wrong with a run before it loads data: one line for the first problem.

    Missing values (all named), top-level keys nothing reads, every object's keys, types and limits
    (:func:`check_config`), an accelerator that is not there, a checkpoint that is not there, the evaluation
    settings and the metric a sweep optimises.

    Raises:
        ConfigError: The first problem found, in one line naming the key and what to do.
    """
    check_missing(cfg)
    check_top_level_keys(cfg)
    check_config(cfg)
    _check_value("teacher_shard_passages", cfg.get("teacher_shard_passages", 1), at_least(1), "the run settings")
    check_accelerator(cfg)
    check_checkpoint(cfg)
    if cfg.get("evaluate", True) and isinstance(cfg.get("evaluation"), DictConfig):
        from ragdistill.evaluation.retrieval import check_evaluation_settings

        check_evaluation_settings(cfg.evaluation)
        check_optimized_metric(cfg)
