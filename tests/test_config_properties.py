"""Property-based tests over configs: a wrong key, type or value fails before any work, in one clear message.

Every option of every config group is composed (one option of each group per composition, then each
experiment, search and sweep on its own). Hypothesis then edits one object node or one leaf of one
composed config: an unknown key, a value of the wrong type, a value of the right type, a value outside a
documented limit. ``check_config`` must reject exactly the bad edits, with a ``ConfigError`` that names
the full dotted key, the value and what was expected (or the valid keys). The pipeline is shown to fail
on such values before it loads data or builds a model.

What a composed node *should* take is read from the constructors here, independently of
``config_check``, except where a documented limit is involved (``effective_hints``).
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import string
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from unittest import mock

import pytest
from hydra.utils import get_object
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf, open_dict

from ragdistill.cli import CONFIG_PATH
from ragdistill.config_check import HYDRA_KEYS, check_config, effective_hints
from ragdistill.utils.constraints import Bound
from ragdistill.utils.errors import ConfigError

CONF = Path(CONFIG_PATH)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- every option of every group, composed ---------------------------------------------------


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


WHOLE_RUNS = {"experiment": "", "hparams_search": "", "sweep": "+"}  # group -> prefix; each sets up a whole run
NESTED = {"teacher/source": "teacher=aar", "teacher/chat": "teacher=llm_ranking"}  # group -> a parent that has it
UNREFERENCED = {"lm": "teacher=gold"}  # group -> a setting in which no other key interpolates it (``${lm}``)
PACKAGES = {"teacher/chat": "teacher/chat@teacher"}  # where an option of a nested group goes, when not its folder
PLAIN_GROUPS = sorted(
    d.name for d in CONF.iterdir() if d.is_dir() and d.name not in {"hydra", *WHOLE_RUNS} and options(d.name)
)


def compositions() -> dict[str, list[str]]:
    """Override lists that between them select every option of every group, nested groups included."""
    widest = max(len(options(group)) for group in PLAIN_GROUPS)
    mixes = {
        f"mix{i}": [f"{group}={options(group)[i % len(options(group))]}" for group in PLAIN_GROUPS]
        for i in range(widest)
    }
    runs = {f"{group}={o}": [f"{prefix}{group}={o}"] for group, prefix in WHOLE_RUNS.items() for o in options(group)}
    nested = {
        f"{group}={o}": [parent, f"{PACKAGES.get(group, group)}={o}"]
        for group, parent in NESTED.items()
        for o in options(group)
    }
    alone = {
        f"{group}={o}": [setting, f"{group}={o}"] for group, setting in UNREFERENCED.items() for o in options(group)
    }
    return mixes | runs | nested | alone


def shipped_targets() -> set[str]:
    """Every ``_target_`` a config file names, but Hydra's own (launchers, sweepers, samplers)."""
    files = [f for f in CONF.rglob("*.yaml") if f.relative_to(CONF).parts[0] not in ("hydra", "hparams_search")]
    return {m for f in files for m in re.findall(r"^\s*_target_:\s*(\S+)", f.read_text(), flags=re.MULTILINE)}


class Composed(dict[str, DictConfig]):
    """Composed configs by label; shown by count, as hypothesis prints a failing example's arguments."""

    def __repr__(self) -> str:
        return f"<{len(self)} composed configs>"


class Pool(list[Any]):
    """Sites (or site, strategy pairs) to draw from; shown by count."""

    def __repr__(self) -> str:
        return f"<{len(self)} sites>"


@pytest.fixture(scope="module")
def composed(compose_at, tmp_path_factory) -> Composed:
    """One composed config per entry of :func:`compositions` (composing is the slow part: done once)."""
    run_dir = tmp_path_factory.mktemp("config_properties") / "run"
    return Composed({label: compose_at("config", overrides, run_dir) for label, overrides in compositions().items()})


# --- where to edit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A node building an object (``key=None``) or one of its leaves, in composition ``label``."""

    label: str
    path: str
    target: str
    key: str | None = None

    @property
    def full(self) -> str:
        return self.path if self.key is None else f"{self.path}.{self.key}"


def _referenced(cfg: DictConfig) -> set[str]:
    """The keys other keys interpolate (``${lm}``): an edit there shows up under another path too."""
    text = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)
    return set(re.findall(r"\$\{([A-Za-z_][\w.]*)\}", text))


def _object_nodes(node: DictConfig, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    for key in map(str, node):
        if (not path and key == "hydra") or OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            child_path = f"{path}.{key}" if path else key
            if "_target_" in child:
                yield child_path, child
            yield from _object_nodes(child, child_path)


def sites_of(label: str, cfg: DictConfig) -> Iterator[Site]:
    referenced = _referenced(cfg)
    for path, node in _object_nodes(cfg):
        if any(path == ref or path.startswith(f"{ref}.") for ref in referenced):
            continue
        target = str(node._target_)
        yield Site(label, path, target)
        for key in map(str, node):
            if key in HYDRA_KEYS or OmegaConf.is_missing(node, key) or f"{path}.{key}" in referenced:
                continue
            if not isinstance(node[key], DictConfig):
                yield Site(label, path, target, key)


@pytest.fixture(scope="module")
def sites(composed) -> Pool:
    return Pool(site for label, cfg in composed.items() for site in sites_of(label, cfg))


@pytest.fixture(scope="module")
def typed_leaves(sites) -> Pool:
    """Leaves whose constructor hint is a plain type, with that type."""
    return Pool((s, t) for s in sites if s.key and (t := simple_type(constructor_hint(s.target, s.key))))


@pytest.fixture(scope="module")
def drawable_leaves(sites) -> Pool:
    """Leaves with the values that fit them."""
    return Pool((s, v) for s in sites if s.key and (v := valid_values(_hint_of(s))) is not None)


@pytest.fixture(scope="module")
def limited_leaves(sites) -> Pool:
    """Leaves with a documented limit or choice, with values of the right type outside it."""
    return Pool((s, v) for s in sites if s.key and (v := invalid_values(_hint_of(s))) is not None)


@pytest.fixture(scope="module")
def closed_nodes(sites) -> Pool:
    """Object nodes whose target names every keyword it takes."""
    return Pool(s for s in sites if s.key is None and not takes_any_keyword(s.target))


def edited(composed: Composed, site: Site, key: str, value: Any) -> DictConfig:
    """A copy of the site's config with ``key`` of its node set to ``value`` (added if new)."""
    cfg = copy.deepcopy(composed[site.label])
    node = OmegaConf.select(cfg, site.path)
    with open_dict(node):
        node[key] = value
    return cfg


def raised(cfg: DictConfig) -> str:
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- what a constructor takes, read from its signature ---------------------------------------


def _inits(target: Any) -> list[Callable[..., Any]]:
    if not inspect.isclass(target):
        return [target]
    return [cls.__init__ for cls in target.__mro__ if "__init__" in vars(cls) and cls is not object]


def parameter_names(target: str) -> set[str]:
    """Every parameter name of every ``__init__`` along the target's MRO (more than it takes: never fewer)."""
    return {p for function in _inits(get_object(target)) for p in inspect.signature(function).parameters}


def constructor_hint(target: str, key: str) -> Any:
    """The type hint of ``key`` in the first ``__init__`` along the target's MRO that declares it."""
    for function in _inits(get_object(target)):
        try:
            hints = typing.get_type_hints(function)
        except Exception:
            continue
        if key in hints:
            return hints[key]
    return None


def takes_any_keyword(target: str) -> bool:
    """A library's class or function taking ``**kwargs`` (ours forward theirs to a base that names them)."""
    obj = get_object(target)
    function = _inits(obj)[0]
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())
    return var_keyword and not obj.__module__.startswith("ragdistill.")


def simple_type(hint: Any) -> type | None:
    """``int``/``float``/``bool``/``str``/``list`` when ``hint`` is one of them (or a ``Literal`` of strings),
    optionally ``| None``; ``None`` for anything richer.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return simple_type(members[0]) if len(members) == 1 else None
    if origin is Literal:
        return str if all(isinstance(v, str) for v in typing.get_args(hint)) else None
    if origin is list or hint is list:
        return list
    return hint if hint in (int, float, bool, str) else None


# --- values ----------------------------------------------------------------------------------

# no "$" (an interpolation) and never "???" (missing): text as a user would write it
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " _-.", max_size=10)
INTS = st.integers(min_value=-(10**12), max_value=10**12)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
LISTS = st.lists(st.integers(-5, 5), max_size=3)
WRONG: dict[type, st.SearchStrategy[Any]] = {
    int: FLOATS | TEXT | st.booleans() | LISTS,
    float: TEXT | st.booleans() | LISTS,
    bool: INTS | FLOATS | TEXT | LISTS,
    str: INTS | FLOATS | st.booleans() | LISTS,
    list: INTS | FLOATS | TEXT | st.booleans(),
}
KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


def _bounds(hint: Any) -> tuple[type, list[Bound]]:
    base, *extras = typing.get_args(hint)
    return base, [extra for extra in extras if isinstance(extra, Bound)]


def _choices(hint: Any) -> list[Any] | None:
    """The values of a ``Literal`` or a union of them (``None`` members dropped); ``None`` for other hints."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_choices(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        return None if any(p is None for p in parts) else [v for p in parts if p is not None for v in p]
    return None


def valid_values(hint: Any) -> st.SearchStrategy[Any] | None:
    """Values that fit ``hint`` (limits included); ``None`` where the hint is not one this test can draw for."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(args)
    if origin is Annotated:
        base, bounds = _bounds(hint)
        low = {b.op: b.limit for b in bounds if b.op in (">", ">=")}
        high = {b.op: b.limit for b in bounds if b.op in ("<", "<=")}
        if base is int:
            return st.integers(
                min_value=math.floor(low[">"]) + 1 if ">" in low else low.get(">="),
                max_value=math.ceil(high["<"]) - 1 if "<" in high else high.get("<="),
            )
        return st.floats(
            min_value=low.get(">", low.get(">=")),
            max_value=high.get("<", high.get("<=")),
            exclude_min=">" in low,
            exclude_max="<" in high,
            allow_nan=False,
            allow_infinity=False,
        )
    if origin in (typing.Union, types.UnionType):
        parts = [part for arg in args if (part := valid_values(arg)) is not None]
        return st.one_of(parts) if parts else None
    if origin is list or hint is list:
        element = valid_values(args[0]) if args else None
        return st.lists(INTS if element is None else element, max_size=3)
    return {bool: st.booleans(), int: INTS, float: FLOATS, str: TEXT}.get(hint)


def _violating(base: type, bound: Bound) -> st.SearchStrategy[Any]:
    limit = bound.limit
    if base is int:
        return {
            ">=": st.integers(max_value=math.ceil(limit) - 1),
            ">": st.integers(max_value=math.floor(limit)),
            "<=": st.integers(min_value=math.floor(limit) + 1),
            "<": st.integers(min_value=math.ceil(limit)),
        }[bound.op]
    finite = {"allow_nan": False, "allow_infinity": False}
    return (
        st.just(math.nan)
        | {
            ">=": st.floats(max_value=limit, exclude_max=True, **finite),
            ">": st.floats(max_value=limit, **finite),
            "<=": st.floats(min_value=limit, exclude_min=True, **finite),
            "<": st.floats(min_value=limit, **finite),
        }[bound.op]
    )


def invalid_values(hint: Any) -> st.SearchStrategy[Any] | None:
    """Values of the right type outside a documented limit or choice; ``None`` where ``hint`` sets none."""
    choices = _choices(hint)
    if choices is not None:
        return TEXT.filter(lambda text: text not in choices)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return invalid_values(members[0]) if len(members) == 1 else None
    if typing.get_origin(hint) is Annotated:
        base, bounds = _bounds(hint)
        return st.one_of([_violating(base, bound) for bound in bounds])
    return None


def _hint_of(site: Site) -> Any:
    return effective_hints(get_object(site.target)).get(site.key or "")


# --- the properties --------------------------------------------------------------------------


def test_every_composition_passes_unedited_and_every_object_is_reached(composed, sites):
    """The baseline every edit starts from; the sites reach every object a config file builds."""
    for cfg in composed.values():
        check_config(cfg)
    assert {s.target for s in sites} >= shipped_targets(), shipped_targets() - {s.target for s in sites}


@SETTINGS
@given(data=st.data())
def test_an_unknown_key_names_its_full_path_and_the_valid_keys(composed, closed_nodes, data):
    site = data.draw(st.sampled_from(closed_nodes), label="site")
    node = OmegaConf.select(composed[site.label], site.path)
    key = data.draw(KEYS.filter(lambda k: k not in parameter_names(site.target) and k not in node), label="key")

    message = raised(edited(composed, site, key, 1))

    assert message.startswith(f"{site.path}.{key}: {site.target} takes no argument {key!r}; valid keys: [")
    valid = message.partition("valid keys: ")[2]
    for present in (str(k) for k in node if str(k) not in HYDRA_KEYS):  # the keys already there are valid ones
        assert repr(present) in valid, (present, message)


@SETTINGS
@given(data=st.data())
def test_a_value_of_the_wrong_type_names_key_value_and_expected_type(composed, typed_leaves, data):
    site, kind = data.draw(st.sampled_from(typed_leaves), label="site")
    assert site.key is not None
    value = data.draw(WRONG[kind], label="value")

    message = raised(edited(composed, site, site.key, value))

    assert message.startswith(f"{site.full}={value!r} ({type(value).__name__}) does not fit {site.target}: expected ")
    expected = message.partition(": expected ")[2]
    assert expected.startswith((kind.__name__, "one of [")), message


@SETTINGS
@given(data=st.data())
def test_a_value_that_fits_the_constructor_is_never_rejected(composed, drawable_leaves, data):
    site, values = data.draw(st.sampled_from(drawable_leaves), label="site")
    assert site.key is not None

    check_config(edited(composed, site, site.key, data.draw(values, label="value")))


@SETTINGS
@given(data=st.data())
def test_a_value_outside_a_documented_limit_names_key_value_and_limit(composed, limited_leaves, data):
    site, values = data.draw(st.sampled_from(limited_leaves), label="site")
    assert site.key is not None
    value = data.draw(values, label="value")

    message = raised(edited(composed, site, site.key, value))

    assert message.startswith(f"{site.full}={value!r} ({type(value).__name__}) does not fit ")
    assert re.search(r": expected (one of \[|(int|float) [<>]=? )", message), message


LIMITED = {  # arguments whose constructor checks a limit or a choice: their hints must carry it
    "ragdistill.data.squad.load_squad_open": {"n_train", "n_eval"},
    "ragdistill.data.distillation_datamodule.DistillationDataModule": {
        "batch_size",
        "group_size",
        "val_size",
        "num_workers",
    },
    "ragdistill.candidates.bm25.BM25Candidates": {"k", "method", "batch_size"},
    "ragdistill.candidates.dense.DenseCandidates": {"k", "batch_size", "precision"},
    "ragdistill.retriever.bi_encoder_module.BiEncoderModule": {"pooling"},
    "ragdistill.retriever.schedule.linear_warmup_decay": {"warmup_ratio"},
    "ragdistill.losses.infonce.InfoNCELoss": {"temperature"},
    "ragdistill.losses.kl.KLDistillLoss": {"tau_student", "tau_teacher"},
    "ragdistill.losses.margin_mse.MarginMSELoss": {"student_scale"},
    "ragdistill.index.faiss_index.FaissIndex": {"kind", "metric", "hnsw_m", "ivf_nlist", "pq_m", "nprobe", "shards"},
    "ragdistill.models.lm.LanguageModel": {"dtype"},
    "ragdistill.models.chat_api.ChatClient": {"max_concurrency", "timeout_s", "max_retries", "backoff_s"},
    "ragdistill.teachers.lm_likelihood.LMLikelihoodTeacher": {"num_candidates", "max_batch_tokens", "precision"},
    "ragdistill.teachers.aar.AARTeacher": {"top_n", "refresh_every_n_steps", "mining_depth"},
    "ragdistill.teachers.intermediate.IntermediateTeacher": {"llm_questions", "num_candidates", "epochs"},
    "ragdistill.teachers.llm_ranking.ListwiseRankingTeacher": {"num_candidates", "min_valid_fraction"},
    "ragdistill.reader.lm_reader.LMReader": {"max_new_tokens", "max_passage_tokens", "precision"},
}


@pytest.mark.parametrize("path", sorted(LIMITED))
def test_limits_travel_in_the_constructors_own_hints(path):
    """The limit is read off the signature (a subclass inherits its base's), so no central table can go stale."""
    hints = effective_hints(get_object(path))
    for key in sorted(LIMITED[path]):
        assert invalid_values(hints[key]) is not None, (path, key, hints[key])


CHEAP = {  # built in microseconds: their own checks can be compared with the documented limits
    "ragdistill.losses.infonce.InfoNCELoss": {},
    "ragdistill.losses.kl.KLDistillLoss": {},
    "ragdistill.losses.margin_mse.MarginMSELoss": {},
    "ragdistill.index.faiss_index.FaissIndex": {},
    "ragdistill.candidates.bm25.BM25Candidates": {},
    "ragdistill.teachers.gold.GoldTeacher": {},
    "ragdistill.teachers.aar.AARTeacher": {"source": None},
}
LATE_IN_THE_LIBRARY: set[tuple[str, str]] = set()
"""Limits a class does not check itself (a library fails on them in the middle of a run): none left."""


@SETTINGS
@given(data=st.data())
def test_the_class_itself_rejects_what_its_documented_limit_rejects(data):
    """The limits restate the constructors' own checks: never stricter than the class (but LATE_IN_THE_LIBRARY)."""
    path = data.draw(st.sampled_from(sorted(CHEAP)), label="class")
    hints = effective_hints(get_object(path))
    limited = sorted(k for k in hints if invalid_values(hints[k]) is not None and (path, k) not in LATE_IN_THE_LIBRARY)
    key = data.draw(st.sampled_from(limited), label="key")
    value = data.draw(invalid_values(hints[key]), label="value")  # type: ignore[arg-type]

    with pytest.raises(ValueError):
        get_object(path)(**CHEAP[path], **{key: value})


# --- before any work -------------------------------------------------------------------------

_PRECISIONS = set(_choices(typing.get_type_hints(get_object("pytorch_lightning.Trainer.__init__"))["precision"]) or [])
UNKNOWN_PRECISION = TEXT.filter(lambda text: text not in _PRECISIONS)
EARLY_FAILURES: dict[str, st.SearchStrategy[Any]] = {
    "datamodule.batch_size": st.integers(max_value=0) | TEXT,
    "loss.temperature": st.floats(max_value=0, allow_infinity=False) | TEXT,
    "candidates.k": st.integers(max_value=0),
    "teacher.num_candidates": st.integers(max_value=0),
    "evaluation.reader_top_k": st.integers(max_value=0),
    "index.kind": TEXT.filter(lambda text: text not in ("flat", "hnsw", "ivfpq")),
    "index.shards": st.integers(max_value=0),
    "trainer.precision": UNKNOWN_PRECISION,
    "evaluation.precision": UNKNOWN_PRECISION,
    "evaluation.encode_batch_size": st.integers(max_value=0),
    "lm.dtype": TEXT.filter(lambda text: text not in ("float32", "bfloat16", "float16")),
    # the evaluation settings and the run's own settings, checked up front since issue 29
    "evaluation.ks": st.lists(st.integers(max_value=0), min_size=1, max_size=3)
    | st.lists(st.integers(min_value=101, max_value=10**6), min_size=1, max_size=3),  # beyond depth 100
    "evaluation.depth": st.integers(max_value=0),
    "evaluation.fusion": TEXT.filter(lambda text: text not in ("none", "rrf", "wsum")),
    "teacher_shard_passages": st.integers(max_value=0),
    "teacher_save_every_passages": st.integers(max_value=0),
}


@pytest.fixture(scope="module")
def smoke(compose_at, tmp_path_factory) -> Composed:
    return Composed(smoke=compose_at("config", ["experiment=fixture_smoke"], tmp_path_factory.mktemp("smoke") / "run"))


@pytest.mark.parametrize("key", sorted(EARLY_FAILURES))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_the_pipeline_rejects_a_bad_value_before_loading_data_or_building_a_model(smoke, key, data):
    from ragdistill import pipeline

    cfg = copy.deepcopy(smoke["smoke"])
    value = data.draw(EARLY_FAILURES[key], label="value")
    OmegaConf.update(cfg, key, value, force_add=True)

    refuse = mock.patch.object(pipeline, "instantiate", side_effect=AssertionError("built an object"))
    with tempfile.TemporaryDirectory() as scratch:
        cfg.paths.output_dir = str(Path(scratch) / "run")
        with refuse as built, pytest.raises(ValueError, match=re.escape(key)) as error:  # a ConfigError is one
            pipeline.train(cfg)
        assert not Path(cfg.paths.output_dir).exists(), "the run dir was written before the check"

    assert built.call_count == 0 and "\n" not in str(error.value)


def test_nested_values_show_as_written():
    """A list value is shown as the user wrote it, not as OmegaConf's ListConfig."""
    cfg = OmegaConf.create({"index": {"_target_": "ragdistill.index.faiss_index.FaissIndex", "kind": [1, 2]}})
    with pytest.raises(ConfigError, match=r"^index\.kind=\[1, 2\] \(list\) does not fit .*: expected one of"):
        check_config(cfg)


def test_a_limit_is_described_as_a_user_writes_it(compose_at, tmp_path):
    cfg = compose_at("config", ["datamodule.group_size=0"], tmp_path / "r")
    with pytest.raises(ConfigError, match=r"datamodule\.group_size=0 \(int\) .*: expected int >= 1 or None$"):
        check_config(cfg)
    cfg = compose_at("config", ["retriever.scheduler.warmup_ratio=1.0"], tmp_path / "r")
    with pytest.raises(ConfigError, match=r"warmup_ratio=1\.0 \(float\) .*: expected float >= 0 and < 1$"):
        check_config(cfg)
