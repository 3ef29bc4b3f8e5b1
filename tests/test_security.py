"""Security invariants: safe deserialisation, no remote code unless asked, and an API key that leaks nowhere.

The source scan (AST, not text: comments and docstrings may name the forbidden calls) fails with the file and
line of any ``torch.load`` without ``weights_only=True``, any checkpoint load without it, any pickle-family
load, ``allow_pickle=True``, unsafe YAML, ``eval``/``exec``, or a hard-coded ``trust_remote_code=True``.

The leak probe is a real training run: the listwise LLM teacher talks to an OpenAI-compatible server on
loopback that echoes the ``Authorization`` header back (in a 500 error once, inside an answer once), the
run logs to CSV, TensorBoard, W&B (offline) and MLflow, and a report is built from it. Every byte of every
file the run, its caches, the dashboards' staging dirs and the report wrote is then searched for the key,
and so is every log record and everything printed.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import ragdistill
from http_fakes import send_json
from ragdistill.cli import CONFIG_PATH
from ragdistill.models.chat_api import ChatClient
from ragdistill.pipeline import train
from ragdistill.report.command import main as report_main
from ragdistill.retriever import bi_encoder_module

SRC = Path(ragdistill.__file__).parent
CONF = Path(CONFIG_PATH)

# -- the source scan -------------------------------------------------------------------------------------

UNSAFE_LOADS = {
    "pickle.load": "unpickling runs arbitrary code",
    "pickle.loads": "unpickling runs arbitrary code",
    "pickle.Unpickler": "unpickling runs arbitrary code",
    "cloudpickle.load": "unpickling runs arbitrary code",
    "cloudpickle.loads": "unpickling runs arbitrary code",
    "dill.load": "unpickling runs arbitrary code",
    "dill.loads": "unpickling runs arbitrary code",
    "joblib.load": "joblib files are pickles",
    "marshal.load": "marshal reads code objects",
    "marshal.loads": "marshal reads code objects",
    "shelve.open": "shelve stores pickles",
    "pd.read_pickle": "unpickling runs arbitrary code",
    "pandas.read_pickle": "unpickling runs arbitrary code",
    "torch.jit.load": "a TorchScript archive carries code",
    "yaml.load": "use yaml.safe_load",
    "yaml.unsafe_load": "use yaml.safe_load",
    "yaml.full_load": "use yaml.safe_load",
    "eval": "evaluates arbitrary code",
    "exec": "executes arbitrary code",
}
"""Calls that must not appear in the package, with why."""

CHECKPOINT_LOADS = ("torch.load", "load_from_checkpoint")
"""Calls that unpickle a checkpoint: each must pass ``weights_only=True``."""


def dotted(node: ast.expr) -> str:
    """``torch.jit.load`` for the call target ``torch.jit.load``; other expressions read ``(...)``: ``(...).eval``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return "(...)"


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    """Whether ``call`` passes ``name=<literal value>``."""
    return any(
        kw.arg == name and isinstance(kw.value, ast.Constant) and kw.value.value is value for kw in call.keywords
    )


def call_problems(call: ast.Call) -> list[str]:
    """What is unsafe about one call (empty when nothing is)."""
    name = dotted(call.func)
    problems = []
    if name in UNSAFE_LOADS:
        problems.append(f"{name}(): {UNSAFE_LOADS[name]}")
    checkpoint_load = name.endswith(CHECKPOINT_LOADS) or any(kw.arg == "ckpt_path" for kw in call.keywords)
    if checkpoint_load and not keyword_is(call, "weights_only", True):
        problems.append(f"{name}() loads a checkpoint without weights_only=True (a pickle may run code)")
    if keyword_is(call, "trust_remote_code", True):
        problems.append(f"{name}(trust_remote_code=True) hard-coded: take it from a setting that defaults to false")
    if keyword_is(call, "allow_pickle", True):
        problems.append(f"{name}(allow_pickle=True): unpickling runs arbitrary code")
    return problems


def default_problems(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """A ``trust_remote_code`` parameter whose default is anything but ``False``."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
    keyword_only = zip(args.kwonlyargs, args.kw_defaults, strict=True)
    pairs += [(arg, default) for arg, default in keyword_only if default is not None]
    return [
        f"{function.name}(trust_remote_code=...) must default to False"
        for arg, default in pairs
        if arg.arg == "trust_remote_code" and not (isinstance(default, ast.Constant) and default.value is False)
    ]


def import_problems(node: ast.ImportFrom) -> list[str]:
    """A bare-name import of a checked call (``from torch import load``), which the call checks would miss."""
    names = [f"{node.module}.{alias.name}" for alias in node.names]
    return [
        f"from {node.module} import {name.rsplit('.', 1)[1]}: call it as {name}, so that it is checked"
        for name in names
        if name in UNSAFE_LOADS or name in CHECKPOINT_LOADS
    ]


def scan(source: str, filename: str) -> list[str]:
    """``file:line: problem`` for every unsafe call or default in one module."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            found += [f"{filename}:{node.lineno}: {problem}" for problem in call_problems(node)]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [f"{filename}:{node.lineno}: {problem}" for problem in default_problems(node)]
        elif isinstance(node, ast.ImportFrom):
            found += [f"{filename}:{node.lineno}: {problem}" for problem in import_problems(node)]
    return found


def test_package_deserialises_safely_and_runs_no_remote_code_by_default():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50  # the scan really walked the package
    problems = [p for file in files for p in scan(file.read_text(), str(file.relative_to(SRC.parent)))]
    assert not problems, "unsafe calls in the package:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("torch.load(path)", "without weights_only=True"),
        ("torch.load(path, weights_only=False)", "without weights_only=True"),
        ("trainer.fit(model, ckpt_path=last)", "without weights_only=True"),
        ("Model.load_from_checkpoint(path)", "without weights_only=True"),
        ("AutoModel.from_pretrained(path, trust_remote_code=True)", "hard-coded"),
        ("np.load(path, allow_pickle=True)", "allow_pickle=True"),
        ("pickle.loads(blob)", "pickle.loads(): unpickling"),
        ("yaml.load(text, Loader=yaml.Loader)", "use yaml.safe_load"),
        ("eval(text)", "evaluates arbitrary code"),
        ("def load(path, trust_remote_code=True): ...", "must default to False"),
        ("def load(path, *, trust_remote_code: bool = None): ...", "must default to False"),
        ("from pickle import loads", "call it as pickle.loads"),
        ("from torch import load", "call it as torch.load"),
    ],
)
def test_scan_catches_each_unsafe_pattern_with_its_line(snippet, expected):
    (problem,) = scan(f"import x\n{snippet}\n", "pkg/mod.py")
    assert problem.startswith("pkg/mod.py:2: ") and expected in problem


@pytest.mark.parametrize(
    "snippet",
    [
        "torch.load(path, weights_only=True)",
        "trainer.fit(model, ckpt_path=last, weights_only=True)",
        "AutoModel.from_pretrained(path, trust_remote_code=self.trust_remote_code)",
        "model.eval()",
        "Ranker(path).eval()",
        "pickle.dumps(plan)",
        "yaml.safe_load(text)",
        "def load(path, trust_remote_code: bool = False): ...",
    ],
)
def test_scan_accepts_the_safe_forms(snippet):
    assert scan(snippet, "pkg/mod.py") == []


# -- the configs -----------------------------------------------------------------------------------------


def walk_key(tree: Any, key: str, where: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every ``key`` in a nested structure of mappings and lists."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            path = f"{where}.{name}" if where else str(name)
            if name == key:
                yield path, value
            yield from walk_key(value, key, path)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from walk_key(value, key, f"{where}[{i}]")


def test_every_trust_remote_code_setting_in_conf_defaults_to_false():
    settings = {
        f"{file.relative_to(CONF)}:{path}": value
        for file in sorted(CONF.rglob("*.yaml"))
        for path, value in walk_key(yaml.safe_load(file.read_text()), "trust_remote_code")
    }
    assert {"lm/base/language_model.yaml:trust_remote_code", "retriever/base/bi_encoder.yaml:trust_remote_code"} <= set(
        settings
    )
    assert {where: value for where, value in settings.items() if value is not False} == {}


def test_composed_configs_load_no_remote_code(compose_cfg):
    for overrides in ([], ["retriever=hf", "retriever.path=some/model", "lm=hf", "lm.path=some/lm", "reader=lm"]):
        cfg = compose_cfg("config", overrides)
        found = dict(walk_key(OmegaConf.to_container(cfg, resolve=False), "trust_remote_code"))
        assert {"retriever.trust_remote_code", "lm.trust_remote_code"} <= set(found)
        assert {where: value for where, value in found.items() if value is not False} == {}, overrides


def test_no_config_reads_a_secret_from_the_environment():
    """A key interpolated with ``${oc.env:...}`` would be resolved into resolved_config.yaml and the dashboards."""
    secretive = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    found = [
        f"{file.relative_to(CONF)}:{n}: {line.strip()}"
        for file in sorted(CONF.rglob("*.yaml"))
        for n, line in enumerate(file.read_text().splitlines(), 1)
        if "oc.env:" in line and any(word in line.upper() for word in secretive)
    ]
    assert not found, "configs must name the variable (api_key_env), never resolve it:\n" + "\n".join(found)


# -- remote code ------------------------------------------------------------------------------------------


@pytest.fixture
def backbone_with_code(tiny_encoder_dir, tmp_path) -> tuple[Path, Path]:
    """A model folder whose architecture is defined by Python files inside it; they write ``marker`` on import."""
    folder, marker = tmp_path / "backbone", tmp_path / "remote-code-ran"
    shutil.copytree(tiny_encoder_dir, folder)
    touch = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    (folder / "configuration_probe.py").write_text(
        f"{touch}from transformers import BertConfig\nclass ProbeConfig(BertConfig):\n    model_type = 'probe-bert'\n"
    )
    (folder / "modeling_probe.py").write_text(
        f"{touch}from transformers import BertModel\nclass ProbeModel(BertModel): ...\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "probe-bert"
    config["auto_map"] = {"AutoConfig": "configuration_probe.ProbeConfig", "AutoModel": "modeling_probe.ProbeModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_the_shipped_retriever_config_refuses_a_backbone_that_ships_code(backbone_with_code, compose_cfg):
    folder, marker = backbone_with_code
    cfg = compose_cfg("config", [f"retriever.path={folder}"])
    with pytest.raises(InstantiationException, match="trust_remote_code=True"):
        instantiate(cfg.retriever)
    assert not marker.exists()


def test_retriever_trust_remote_code_reaches_every_from_pretrained(tiny_encoder_dir, monkeypatch, caplog):
    seen: list[tuple[str, object]] = []
    for cls in (bi_encoder_module.AutoTokenizer, bi_encoder_module.AutoModel):
        real = cls.from_pretrained

        def spy(*args: Any, _real: Any = real, _name: str = cls.__name__, **kwargs: Any) -> Any:
            seen.append((_name, kwargs.get("trust_remote_code")))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    bi_encoder_module.BiEncoderModule(str(tiny_encoder_dir), shared_towers=False)
    assert seen == [("AutoTokenizer", False), ("AutoModel", False), ("AutoModel", False)]
    seen.clear()
    bi_encoder_module.BiEncoderModule(str(tiny_encoder_dir), shared_towers=False, trust_remote_code=True)
    assert seen == [("AutoTokenizer", True), ("AutoModel", True), ("AutoModel", True)]
    assert "retriever.trust_remote_code=true" in caplog.text


# -- a server that echoes the key back ---------------------------------------------------------------------

Respond = Callable[[int, str], tuple[int, bytes]]
"""``respond(request number, Authorization header) -> (status, body)``."""


class EchoServer:
    """A chat-completions server on 127.0.0.1 whose answers come from ``respond``; records each request's header."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        self.httpd.daemon_threads = True
        self.httpd.echo = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, authorization: str) -> tuple[int, bytes]:
        with self.lock:
            self.authorizations.append(authorization)
            number = len(self.authorizations)
        return self.respond(number, authorization)


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, data = self.server.echo.answer(self.headers.get("Authorization", ""))  # type: ignore[attr-defined]
        send_json(self, status, data)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def echo_server(respond: Respond) -> Iterator[EchoServer]:
    server = EchoServer(respond)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def completion(content: str) -> bytes:
    return json.dumps(
        {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    ).encode()


def server_error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "server_error"}}).encode()


# -- the client masks what the server echoes ------------------------------------------------------------------


def test_a_key_echoed_json_escaped_in_an_answer_is_masked_before_it_is_returned_or_cached(tmp_path, monkeypatch):
    key = f"sk-probe/{secrets.token_hex(12)}"  # a "/" that the server escapes as "\/", as PHP's json_encode does
    monkeypatch.setenv("RAGDISTILL_PROBE_KEY", key)

    def respond(number: int, authorization: str) -> tuple[int, bytes]:
        return 200, completion(f"[1] > [2] ({authorization})").replace(b"/", b"\\/")

    with (
        echo_server(respond) as server,
        ChatClient(server.base_url, "probe", "RAGDISTILL_PROBE_KEY", cache_dir=tmp_path, progress=False) as client,
    ):
        answer = client.complete([{"role": "user", "content": "rank"}])
    assert server.authorizations == [f"Bearer {key}"]
    assert answer == "[1] > [2] (Bearer ***)"
    (entry,) = tmp_path.glob("*/*.json")
    assert key.encode() not in entry.read_bytes() and b"Bearer ***" in entry.read_bytes()


# -- the whole run ---------------------------------------------------------------------------------------

KEY_ENV = str(OmegaConf.load(CONF / "lm" / "base" / "endpoint.yaml").api_key_env)
"""The variable ``teacher/chat@teacher=api`` reads its key from (OPENAI_API_KEY)."""
SECRET = secrets.token_hex(16)
KEY = f"sk-ragdistill-leak-probe-{SECRET}"
"""Searched for whole, and by the first half of its random part (a cut-off key is a leak too)."""
NEEDLES = (KEY.encode(), SECRET[:16].encode())
K = 4
"""Candidates per question: one ranking window, one request per question."""
RANKING = " > ".join(f"[{i}]" for i in range(K, 0, -1))
LOGGERS = "logger=[many,mlflow]" if find_spec("mlflow") else "logger=many"
"""CSV, TensorBoard and W&B offline; MLflow too where the optional extra is installed."""


def leaky_respond(number: int, authorization: str) -> tuple[int, bytes]:
    """The first request fails with a 500 quoting the header (retried); the second quotes it in its answer."""
    if number == 1:
        return 500, server_error(f"upstream refused the request; it sent 'Authorization: {authorization}'")
    if number == 2:
        return 200, completion(f"{RANKING}\n(debug: your request had Authorization: {authorization})")
    return 200, completion(RANKING)


@dataclass
class ProbeRun:
    """What the leak-probe run left behind."""

    root: Path
    run_dir: Path
    cache_dir: Path
    report_dir: Path
    cfg: DictConfig
    metrics: dict[str, float]
    authorizations: list[str]
    records: list[logging.LogRecord]
    printed: str


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def everything_logged_and_printed() -> Iterator[tuple[_Keep, io.StringIO]]:
    """Every log record at DEBUG and up (httpx and httpcore trace requests there), and all of stdout/stderr.

    Except numba's compiler traces (20,000 records of the metrics' compiled IR, which slow the run 2x).
    """
    root, numba, keep, printed = logging.getLogger(), logging.getLogger("numba"), _Keep(), io.StringIO()
    levels = root.level, numba.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    numba.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield keep, printed
    finally:
        root.removeHandler(keep)
        root.setLevel(levels[0])
        numba.setLevel(levels[1])


@pytest.fixture(scope="module")
def probe(tmp_path_factory, compose_at, tiny_encoder_dir) -> Iterator[ProbeRun]:
    """A training run with the chat-API teacher behind :func:`leaky_respond`, all dashboards, then a report."""
    import wandb

    root = tmp_path_factory.mktemp("leak_probe")
    run_dir, cache_dir, report_dir = root / "run", root / "cache", root / "report"
    with pytest.MonkeyPatch.context() as patch, echo_server(leaky_respond) as server:
        patch.setenv(KEY_ENV, KEY)
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("WANDB_SILENT", "true")
        for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # W&B's staging dirs, searched too
            patch.setenv(name, str(root / name.lower()))
        overrides = [
            "experiment=fixture_smoke",
            "data.n_train=24",
            "data.n_eval=8",
            "trainer.max_epochs=1",
            f"retriever.path={tiny_encoder_dir}",
            "teacher=llm_ranking",
            "teacher/chat@teacher=api",
            f"teacher.chat.base_url={server.base_url}",
            "teacher.chat.model=probe",
            "teacher.chat.progress=false",
            "teacher.chat.backoff_s=0.01",
            f"teacher.num_candidates={K}",
            "loss=listmle",
            f"datamodule.group_size={K}",
            "datamodule.val_size=8",
            "callbacks=checkpoints",
            "evaluation.bm25_baseline=false",
            LOGGERS,
        ]
        cfg = compose_at("config", overrides, run_dir)
        cfg.paths.cache_dir = str(cache_dir)
        with everything_logged_and_printed() as (keep, printed):
            metrics, _ = train(cfg)
            wandb.finish()  # the CLI's task wrapper does this; it flushes the run folder
            assert report_main([str(run_dir), "--out", str(report_dir)]) == 0
        yield ProbeRun(
            root, run_dir, cache_dir, report_dir, cfg, metrics, server.authorizations, keep.records, printed.getvalue()
        )


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_the_run_used_the_key_and_the_server_echoed_it(probe):
    n_train = probe.metrics["teacher/llm_outputs"]
    assert n_train == 24 and probe.metrics["train/questions"] > 0
    assert probe.metrics["runtime/llm_retries"] == 1  # the 500 quoting the header was retried
    assert len(probe.authorizations) == n_train + 1
    assert set(probe.authorizations) == {f"Bearer {KEY}"}  # so every echo above held the key


def test_the_key_is_in_no_file_of_the_run_its_cache_the_dashboards_or_the_report(probe):
    files = files_under(probe.root)
    leaks = [str(path.relative_to(probe.root)) for path in files if any(n in path.read_bytes() for n in NEEDLES)]
    assert not leaks, f"the API key (or part of it) was written to {leaks}"

    # the search reached every store, the binary ones included: each holds the config, the variable's name with it
    stores = ["run/resolved_config.yaml", "run/csv/hparams.yaml", "run/tensorboard/events.out.tfevents.*"]
    stores += ["run/wandb/offline-run-*/run-*.wandb"] + (["run/mlflow.db"] if "mlflow" in LOGGERS else [])
    for pattern in stores:
        matches = list(probe.root.glob(pattern))
        assert set(matches) <= set(files), pattern
        assert any(KEY_ENV.encode() in store.read_bytes() for store in matches), pattern
    chat_answers = list((probe.cache_dir / "chat_responses").glob("*/*.json"))
    assert len(chat_answers) == 24 and set(chat_answers) <= set(files)
    assert {"report.md", "report.html"} <= {path.name for path in files_under(probe.report_dir)}


def test_the_key_is_in_no_log_record_and_nothing_printed(probe):
    def text(record: logging.LogRecord) -> str:
        return f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"

    leaked = [f"{r.name}: {r.getMessage()[:200]}" for r in probe.records if any(n.decode() in text(r) for n in NEEDLES)]
    assert not leaked, f"log records hold the API key: {leaked}"
    assert not any(n.decode() in probe.printed for n in NEEDLES)
    # the redaction path really ran: the retried 500 is logged with the echoed header masked
    retries = [r.getMessage() for r in probe.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == 1 and "HTTP 500" in retries[0] and "Authorization: Bearer ***" in retries[0]


def test_the_runs_checkpoints_load_with_weights_only(probe):
    checkpoints = list((probe.run_dir / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # only tensors and plain types
        assert any(name.startswith("passage_encoder.") for name in checkpoint["state_dict"]), path
