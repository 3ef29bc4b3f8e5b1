"""Call an OpenAI-compatible chat-completions endpoint many times, concurrently, and pay for each request once.

A black-box LLM teacher (RankGPT, arXiv 2304.09542; Intermediate Distillation, arXiv 2406.12169) sends
thousands of prompts to a paid or rate-limited server (OpenAI, vLLM, TGI, llama.cpp). Three things matter:
throughput (a thread pool of ``max_concurrency`` requests in flight), resilience (connection errors,
timeouts, 429 and 5xx are retried with exponential backoff; other 4xx are the caller's bug and fail at
once), and never paying twice: each answer is written atomically to an on-disk cache as soon as it arrives,
so a crash or a rerun resends only what is missing.

Layout under ``cache_dir``::

    <key[:2]>/<key>.json   one answer: the request that made it (model, messages, params), the text, usage

``key`` is the sha256 of the model name, the messages and the generation parameters (not the server URL: the
same model served elsewhere gives the same answers). A file that does not parse, or whose stored request
does not hash to its name, is reported with a warning and requested again.

The API key is read from an environment variable whose *name* is configured, so configs, logs and the cache
hold the name only; the key goes nowhere but the ``Authorization`` header. Whatever comes back from the
server (answers, usage, error messages) is masked before it is cached, logged or raised: a proxy that
echoes request headers must not turn the cache or the logs into a copy of the key.

httpx, not ``requests`` or the ``openai`` package: an ``httpx.Client`` is documented thread-safe with one
connection pool (a ``requests.Session`` is not), has typed per-phase timeouts and timeout exceptions, and is
already installed; the ``openai`` package would add a dependency tree and its own retry and timeout layer,
which would have to be turned off to count retries and cache per request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.constraints import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)

CHAT_CACHE_FORMAT = 1
"""Part of every key: bump when the stored record changes meaning, and old entries miss."""

Messages = Sequence[Mapping[str, Any]]
"""One conversation: ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``."""


PROBE_TIMEOUT_S = 10.0
"""Longest wait for the probe's answer: a server that needs longer to list its models is unwell."""


class ChatAPIError(RuntimeError):
    """A request failed for good: a non-retryable status, retries used up, or an answer without text.

    Attributes:
        status: The HTTP status of the last response, or ``None`` (timeout, connection error).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ChatStats:
    """What a client did so far, for the teacher's ``metrics()``."""

    http_requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    cache_corrupt: int = 0
    fetched: int = 0

    def metrics(self) -> dict[str, float]:
        """The counts as ``runtime/llm_*`` metrics."""
        return {f"runtime/llm_{name}": float(value) for name, value in vars(self).items()}


class ChatClient:
    """A thread-pooled, retrying, caching client for ``POST {base_url}/chat/completions``.

    Args:
        base_url: The API root, e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``.
        model: The ``model`` field of every request.
        api_key_env: Name of the environment variable holding the key, sent as ``Authorization: Bearer``;
            ``None`` for a server without authentication.
        cache_dir: Where answers are cached; ``None`` caches nothing.
        max_concurrency: Requests in flight at once (mind the server's rate limit).
        timeout_s: Limit for each phase of one attempt (connect, send, each read), in seconds.
        max_retries: Further attempts after a timeout, connection error, 429 or 5xx.
        backoff_s: Wait before the first retry; doubles each retry, with jitter, up to ``max_backoff_s``
            (a 429's ``Retry-After`` in seconds is honoured, within the same cap).
        max_backoff_s: Longest wait between attempts.
        progress: Show a progress bar in :meth:`complete_many`.

    Raises:
        ValueError: A bad setting, or ``api_key_env`` names a variable that is not set (the message names
            the variable, never a value).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        cache_dir: str | Path | None = None,
        max_concurrency: PositiveInt = 8,
        timeout_s: PositiveFloat = 60.0,
        max_retries: NonNegativeInt = 5,
        backoff_s: NonNegativeFloat = 1.0,
        max_backoff_s: NonNegativeFloat = 60.0,
        progress: bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError(f"retry settings must be >= 0, got {max_retries=}, {backoff_s=}, {max_backoff_s=}")
        self._api_key = _read_key(api_key_env)
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.progress = progress
        self.stats = ChatStats()
        self._lock = threading.Lock()
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), limits=limits)
        self._probed = False

    def __repr__(self) -> str:
        return (
            f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r}, max_concurrency={self.max_concurrency})"
        )

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def identity(self) -> dict[str, str]:
        """What determines this endpoint's answers besides the prompt (for caches of what it generated)."""
        return {"base_url": self.base_url, "model": self.model}

    def request_key(self, messages: Messages, params: Mapping[str, Any]) -> str:
        """The cache key of one request: sha256 of the model, the messages and the generation parameters."""
        identity = {"format": CHAT_CACHE_FORMAT, "model": self.model, "messages": messages, "params": params}
        blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def complete(self, messages: Messages, **params: Any) -> str:
        """The answer to one conversation (cached); see :meth:`complete_many`."""
        return self._complete([messages], params, description="", show=False)[0]

    def complete_many(
        self, requests: Sequence[Messages], description: str = "Chat completions", **params: Any
    ) -> list[str]:
        """Answer many conversations: cached ones from disk, the rest concurrently, each cached on arrival.

        Identical requests are sent once. When a request fails for good, the requests not yet started are
        cancelled, those in flight are awaited (their answers get cached), and the error is raised.

        Args:
            requests: The conversations.
            description: The progress bar's label.
            **params: Generation parameters sent with every request and part of the cache key
                (``temperature``, ``max_tokens``, ``seed`` …).

        Returns:
            The text of ``choices[0].message.content`` per request, in input order.

        Raises:
            ChatAPIError: A request failed for good (the message names the URL, status and server message).
            ValueError: ``params`` holds ``model``, ``messages`` or ``stream`` (set by the client).
        """
        return self._complete(list(requests), params, description, show=self.progress)

    def _complete(self, requests: list[Messages], params: Mapping[str, Any], description: str, show: bool) -> list[str]:
        reserved = {"model", "messages", "stream"} & set(params)
        if reserved:
            raise ValueError(f"generation params {sorted(reserved)} are set by ChatClient, not by the caller")
        conversations = [[dict(message) for message in messages] for messages in requests]
        keys = [self.request_key(messages, params) for messages in conversations]
        answers: dict[str, str] = {}
        todo: dict[str, Messages] = {}
        for key, messages in zip(keys, conversations, strict=True):
            if key in answers or key in todo:
                continue
            cached = self._load(key)
            if cached is None:
                todo[key] = messages
            else:
                answers[key] = cached
        with self._lock:
            self.stats.cache_hits += len(answers)
        if len(requests) > 1:
            logger.info(
                "Chat <%s>: %d requests, %d from cache, %d to send", self.model, len(keys), len(answers), len(todo)
            )
        if todo:
            self.probe()
            answers |= self._fetch_all(todo, params, description, show)
        return [answers[key] for key in keys]

    def probe(self) -> None:
        """One cheap request (``GET {base_url}/models``) before the first request that is not cached.

        A server that is down, a wrong ``base_url`` or a refused key then fails in one line at once, instead of
        after every retry of every request in flight (34 s with the defaults). A server without ``/models``
        (404, 405, 501) passes: the chat requests themselves will tell. Once a run, and never with a full cache.

        Raises:
            ChatAPIError: The server cannot be reached, or it refuses the key (401, 403).
        """
        if self._probed:
            return
        url = f"{self.base_url}/models"
        try:
            response = self._http.get(url, headers=self._headers(), timeout=min(self.timeout_s, PROBE_TIMEOUT_S))
        except httpx.TransportError as exc:  # timeouts included
            problem = self._redact(f"{type(exc).__name__}: {exc}")
            raise ChatAPIError(
                f"cannot reach {self.base_url} ({problem}): is the server running, and is base_url right?"
            ) from None
        if response.status_code in (401, 403):
            raise ChatAPIError(
                f"{self.base_url} refused the request (HTTP {response.status_code}: {self._server_message(response)}); "
                f"check the key in ${self.api_key_env}",
                response.status_code,
            )
        self._probed = True

    def _fetch_all(
        self, todo: dict[str, Messages], params: Mapping[str, Any], description: str, show: bool
    ) -> dict[str, str]:
        answers: dict[str, str] = {}
        bar = progress_bar()
        bar.disable = not show
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo)), thread_name_prefix="chat")
        try:
            with bar:
                task = bar.add_task(description, total=len(todo), rate="")
                futures: dict[Future[str], str] = {
                    pool.submit(self._fetch, key, messages, params): key for key, messages in todo.items()
                }
                for future in as_completed(futures):
                    answers[futures[future]] = future.result()
                    elapsed = bar.tasks[task].elapsed or 1e-9
                    bar.update(task, advance=1, rate=f"{len(answers) / elapsed:,.1f} req/s")
        finally:
            # On a failure, requests not started are dropped, and those in flight are awaited so that their
            # answers are cached before the error propagates (bounded by the timeout and retries).
            pool.shutdown(wait=True, cancel_futures=True)
        return answers

    def _fetch(self, key: str, messages: Messages, params: Mapping[str, Any]) -> str:
        request = {"model": self.model, "messages": list(messages), **params}
        content, meta = self._post(request)
        with self._lock:
            self.stats.fetched += 1
        if self.cache_dir is not None:
            record = {"format": CHAT_CACHE_FORMAT, "key": key, "request": request, "content": content, **meta}
            record["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                atomic_write_text(self._path(key), json.dumps(record, ensure_ascii=False, indent=1) + "\n")
            except OSError as exc:
                # The answer is in memory; a lost cache entry costs one request on a later run, not this run.
                logger.warning("Could not write chat cache file %s: %s", self._path(key), exc)
        return content

    def _post(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Send one request with retries; return the answer text and its metadata."""
        problem = ""
        retry_after: float | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self._delay(attempt, retry_after)
                logger.info("Retrying %s in %.2f s (attempt %d): %s", self.url, delay, attempt + 1, problem)
                time.sleep(delay)
            with self._lock:
                self.stats.http_requests += 1
                self.stats.retries += attempt > 0
            retry_after = None
            try:
                response = self._http.post(self.url, json=request, headers=self._headers())
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__}, timeout_s={self.timeout_s})"
                continue
            except httpx.TransportError as exc:
                problem = self._redact(f"connection error ({type(exc).__name__}: {exc})")
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                problem = f"HTTP {status}: {self._server_message(response)}"
                retry_after = _seconds(response.headers.get("retry-after"))
                continue
            if not 200 <= status < 300:
                message = self._server_message(response)
                raise ChatAPIError(f"POST {self.url} failed with HTTP {status} (not retried): {message}", status)
            return self._read(response)
        attempts = self.max_retries + 1
        raise ChatAPIError(f"POST {self.url} failed after {attempts} attempts; last: {problem}", None)

    def _headers(self) -> dict[str, str]:
        """The bearer key, where there is one: the only place it leaves this object."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        # Jitter spreads the retries of many threads hit by the same outage or rate limit.
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s) * random.uniform(0.5, 1.0)

    def _read(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        try:
            data = self._mask(response.json())
            choice = data["choices"][0]
            content = choice["message"]["content"]
            meta = {"finish_reason": choice.get("finish_reason"), "usage": data.get("usage")}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            body = self._redact(response.text)[:300]  # masked before cutting, so no piece of the key is left
            raise ChatAPIError(
                self._redact(
                    f"POST {self.url} answered HTTP {response.status_code} without choices[0].message.content "
                    f"({type(exc).__name__}: {exc}); body starts {body!r}"
                ),
                response.status_code,
            ) from None
        if content is None:
            # e.g. a refusal or a tool call: no text to parse; the ranking parser will drop it, visibly.
            content = ""
        if not isinstance(content, str):
            raise ChatAPIError(f"POST {self.url}: message.content is {type(content).__name__}, not text")
        return content, meta

    def _server_message(self, response: httpx.Response) -> str:
        """The server's error message (OpenAI puts it in ``error.message``), key masked, at most 500 chars."""
        try:
            error = self._mask(response.json()).get("error", response.text)
            message = error.get("message", error) if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = response.text
        return self._redact(str(message) or response.reason_phrase)[:500]

    def _redact(self, text: str) -> str:
        """``text`` with every occurrence of the API key replaced by ``***``."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def _mask(self, value: Any) -> Any:
        """A parsed JSON answer with the key masked in every string (JSON escapes could hide it in the raw body)."""
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {self._mask(key): self._mask(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._mask(item) for item in value]
        return value

    def _path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> str | None:
        """The cached answer for ``key``, or ``None`` when absent or corrupt (a corrupt file is reported)."""
        if self.cache_dir is None:
            return None
        path = self._path(key)
        try:
            return self._decode(path.read_bytes(), key)
        except FileNotFoundError:
            return None
        except (OSError, _CorruptEntry) as exc:
            logger.warning("Corrupt chat cache file %s: %s; requesting it again", path, exc)
            with self._lock:
                self.stats.cache_corrupt += 1
            return None

    def _decode(self, raw: bytes, key: str) -> str:
        try:
            record = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError included
            raise _CorruptEntry(f"unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(record, dict) or record.get("format") != CHAT_CACHE_FORMAT:
            raise _CorruptEntry(f"not a chat cache record of format {CHAT_CACHE_FORMAT}")
        request, content = record.get("request"), record.get("content")
        if not isinstance(request, dict) or not isinstance(content, str):
            raise _CorruptEntry("no request or no text content")
        params = {k: v for k, v in request.items() if k not in ("model", "messages")}
        if request.get("model") != self.model or self.request_key(request.get("messages", []), params) != key:
            raise _CorruptEntry("its stored request does not hash to its name")
        return content


class _CorruptEntry(Exception):
    """A cache file that must not be used; the message says why."""


def _read_key(env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ValueError(
            f"environment variable {env} (the API key) is not set or empty; export it, or set "
            "api_key_env to None for a server without authentication"
        )
    return key


def _seconds(header: str | None) -> float | None:
    """A ``Retry-After`` given in seconds (the HTTP-date form is ignored: exponential backoff applies)."""
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None
