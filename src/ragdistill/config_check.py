"""Check a composed config against the signatures of the classes it builds, before any work starts.

The constructors' type hints are the schema: a key the target does not take, or a value of the wrong
type, fails at once with the key's full path, what was expected and the valid keys, instead of as a
``TypeError`` deep inside a run after the data has loaded.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


class ConfigError(ValueError):
    """A config key or value that the object it configures would reject."""


def _import(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"_target_ {path!r} cannot be imported: {error}") from None


def _parameters(target: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return {}, {}, True
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # third-party annotations may not resolve; names are still checked
        hints = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return dict(signature.parameters), hints, takes_any


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; ``None`` where the hint is beyond this simple checker."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        return True if any(results) else (None if None in results else False)
    if origin is typing.Literal:
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
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_node(node: DictConfig, path: str) -> None:
    """Check one ``_target_`` node and, recursively, the nodes inside it."""
    target = _import(str(node["_target_"]))
    parameters, hints, takes_any = _parameters(target)
    valid = sorted(name for name in parameters if name != "self")
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        child_path = f"{path}.{key}" if path else key
        value = node[key] if not OmegaConf.is_missing(node, key) else "???"
        if key not in parameters and not takes_any:
            raise ConfigError(f"{child_path}: {node['_target_']} takes no argument {key!r}; valid keys: {valid}")
        if isinstance(value, DictConfig) and "_target_" in value:
            check_node(value, child_path)
            continue
        if isinstance(value, DictConfig):  # a dict of objects, e.g. a weighted sum's losses
            for entry_key, entry in value.items():
                if isinstance(entry, DictConfig) and "_target_" in entry:
                    check_node(entry, f"{child_path}.{entry_key!s}")
        if value == "???" or (isinstance(value, DictConfig | ListConfig) and key not in hints):
            continue
        hint = hints.get(key)
        if hint is not None and _matches(value, hint) is False:
            raise ConfigError(
                f"{child_path}={value!r} ({type(value).__name__}) does not fit {node['_target_']}: "
                f"expected {_describe(hint)}"
            )


def check_config(cfg: DictConfig, groups: tuple[str, ...] | None = None) -> None:
    """Check every top-level group (or entries of dict groups like ``logger``) that builds an object.

    Raises:
        ConfigError: On the first key the target does not take or value of the wrong type.
    """
    for name in groups or tuple(str(k) for k in cfg if k != "hydra"):
        node = cfg.get(name)
        if not isinstance(node, DictConfig):
            continue
        if "_target_" in node:
            check_node(node, name)
            continue
        for key, entry in node.items():
            if isinstance(entry, DictConfig) and "_target_" in entry:
                check_node(entry, f"{name}.{key!s}")
