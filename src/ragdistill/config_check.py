"""Check a composed config against the signatures of the classes it builds, before any work starts.

The constructors' type hints are the schema: a key the target does not take, or a value of the wrong
type, fails at once with the key's full path, what was expected and the valid keys, instead of as a
``TypeError`` deep inside a run after the data has loaded. Limits live in the same hints
(``batch_size: PositiveInt``, ``kind: IndexKind``, see :mod:`ragdistill.utils.constraints`), so an
out-of-range value fails here too rather than in the middle of training, and a new class needs no entry in
any table of this module.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import operator
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf

from ragdistill.utils.constraints import Bound, LightningPrecision, PositiveInt
from ragdistill.utils.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _trainer_precision() -> Any:
    """What ``pytorch_lightning.Trainer(precision=...)`` accepts, which every ``precision`` key ends up in."""
    import pytorch_lightning as pl

    return typing.get_type_hints(pl.Trainer.__init__)["precision"]


def _expand(hint: Any) -> Any:
    """``hint`` with each :class:`LightningPrecision` marker replaced by the Trainer's own ``precision`` hint."""
    origin = typing.get_origin(hint)
    if origin is Annotated and any(isinstance(extra, LightningPrecision) for extra in typing.get_args(hint)[1:]):
        return _trainer_precision()
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_expand(arg) for arg in typing.get_args(hint)))
    return hint


def _import(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"_target_ {path!r} cannot be imported: {error}") from None


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
        return {name: _expand(hint) for name, hint in typing.get_type_hints(function, include_extras=True).items()}
    except Exception:  # third-party annotations may not resolve; names are still checked
        return {}


@functools.cache
def _parameters(target: Callable[..., Any]) -> tuple[frozenset[str], dict[str, Any], bool]:
    """``(parameter names, their type hints with any limits, whether any keyword goes)`` of ``target``."""
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
    return frozenset(names), hints, _takes_any(functions[-1])


def effective_hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The hint each argument of ``target`` is checked against: its type hint, limits (``Annotated``) included."""
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
    """Check the objects a dict of objects holds (a weighted sum's losses, the loggers, ``evaluation.sets``)."""
    for key in node:
        if OmegaConf.is_missing(node, key):
            continue  # a mandatory value still to give (data=hf's corpus.path): check_missing names it
        entry = node[key]
        if isinstance(entry, DictConfig) and "_target_" in entry:
            check_node(entry, f"{path}.{key!s}")
        elif isinstance(entry, DictConfig):
            _check_objects_in(entry, f"{path}.{key!s}")


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
            f"ckpt_path={path!r}: no such checkpoint file; give a Lightning .ckpt (a run trained with "
            "callbacks=checkpoints keeps one in <run_dir>/checkpoints/), start from a finished run's weights "
            "with retriever.path=<run_dir>/retriever, or leave ckpt_path=null to train from the backbone"
        )


def check_monitors(cfg: DictConfig) -> None:
    """Refuse a callback that watches a ``val/`` metric when no validation split is held out.

    Lightning would only warn, after training, that ModelCheckpoint or EarlyStopping never saw its metric.

    Raises:
        ConfigError: Naming the callback's key and the two ways out.
    """
    callbacks, datamodule = cfg.get("callbacks"), cfg.get("datamodule")
    if not isinstance(callbacks, DictConfig) or not isinstance(datamodule, DictConfig):
        return
    if datamodule.get("val_size", 0):
        return
    for key, callback in callbacks.items():
        name = str(key)
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if isinstance(monitor, str) and monitor.startswith("val/"):
            raise ConfigError(
                f"callbacks.{name}.monitor={monitor!r}: datamodule.val_size=0 holds out no validation questions; "
                f"set datamodule.val_size > 0 or drop the callback (~callbacks.{name})"
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
    (:func:`check_config`), an accelerator that is not there, a checkpoint that is not there, a callback
    watching a validation metric no run of this config makes, the evaluation
    settings and the metric a sweep optimises.

    Raises:
        ConfigError: The first problem found, in one line naming the key and what to do.
    """
    check_missing(cfg)
    check_top_level_keys(cfg)
    check_config(cfg)
    _check_value("teacher_shard_passages", cfg.get("teacher_shard_passages", 1), PositiveInt, "the run settings")
    _check_value(
        "teacher_save_every_passages", cfg.get("teacher_save_every_passages"), PositiveInt | None, "the run settings"
    )
    check_accelerator(cfg)
    check_checkpoint(cfg)
    check_monitors(cfg)
    if cfg.get("evaluate", True) and isinstance(cfg.get("evaluation"), DictConfig):
        from ragdistill.evaluation.retrieval import check_evaluation_settings

        check_evaluation_settings(cfg.evaluation)
        check_optimized_metric(cfg)
