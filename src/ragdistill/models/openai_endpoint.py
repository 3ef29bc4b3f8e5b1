"""Send many requests to one OpenAI-compatible endpoint, concurrently, and pay for each request once.

The base of :class:`~ragdistill.models.chat_api.ChatClient` (``/chat/completions``: listwise ranking, G2R's
unit generation) and :class:`~ragdistill.models.completions_api.CompletionsClient` (``/completions`` with
echoed log-probabilities: likelihood teachers behind a served LLM). Both send thousands of requests to a
paid or rate-limited server (OpenAI, vLLM, TGI, llama.cpp), so three things matter: throughput (a thread
pool of ``max_concurrency`` requests in flight), resilience (connection errors, timeouts, 429 and 5xx are
retried with exponential backoff; other 4xx are the caller's bug and fail at once), and never paying twice:
each answer is written atomically to an on-disk cache as soon as it arrives, so a crash or a rerun resends
only what is missing.

Layout under ``cache_dir``::

    <key[:2]>/<key>.json   one answer: the request that made it (model, payload, params), the answer, usage

``key`` is the sha256 of the cache format, the model name, the payload (messages or prompt) and the
parameters (not the server URL: the same model served elsewhere gives the same answers). A file that does
not parse, or whose stored request does not hash to its name, is reported with a warning and requested again.

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
from typing import Any, ClassVar, Self

import httpx

from ragdistill.utils.atomic import atomic_write_text
from ragdistill.utils.constraints import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from ragdistill.utils.progress import progress_bar

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
"""Longest wait for the probe's answer: a server that needs longer to list its models is unwell."""


class EndpointError(RuntimeError):
    """A request failed for good: a non-retryable status, retries used up, or an answer that cannot be read.

    Attributes:
        status: The HTTP status of the last response, or ``None`` (timeout, connection error).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MalformedAnswer(Exception):
    """An answer (from the server or the cache) without what the client reads; the message says what is missing."""


@dataclass
class EndpointStats:
    """What a client did so far, for the teacher's ``metrics()``."""

    http_requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    cache_corrupt: int = 0
    fetched: int = 0

    def metrics(self) -> dict[str, float]:
        """The counts as ``runtime/llm_*`` metrics."""
        return {f"runtime/llm_{name}": float(value) for name, value in vars(self).items()}


class OpenAIEndpoint:
    """A thread-pooled, retrying, caching client for ``POST {base_url}/{path}``; subclasses say what to send and read.

    A subclass sets :attr:`path`, :attr:`label`, :attr:`payload_field` (the request field that varies: ``messages`` or
    ``prompt``), :attr:`answer_field` and :attr:`cache_format` (the cached record's answer and its format),
    and implements :meth:`parse` (a response's JSON → the answer and its metadata) and :meth:`check_answer`
    (is a cached answer usable).

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
        progress: Show a progress bar while requests are sent.

    Raises:
        ValueError: A bad setting, or ``api_key_env`` names a variable that is not set (the message names
            the variable, never a value).
    """

    path: ClassVar[str] = ""
    label: ClassVar[str] = ""
    """A short name for log lines (``chat``, ``completions``)."""
    payload_field: ClassVar[str] = ""
    answer_field: ClassVar[str] = ""
    cache_format: ClassVar[int | str] = 1
    """Part of every key: bump when the stored record changes meaning, and old entries miss."""

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
        self.url = f"{self.base_url}/{self.path}"
        self.model = model
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.progress = progress
        self.stats = EndpointStats()
        self._lock = threading.Lock()
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), limits=limits)
        self._probed = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r}, "
            f"max_concurrency={self.max_concurrency})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def identity(self) -> dict[str, str]:
        """What determines this endpoint's answers besides the request (for caches of what it produced)."""
        return {"base_url": self.base_url, "model": self.model}

    # --- what a subclass says -------------------------------------------------------------------------------

    def parse(self, data: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The answer in a response's (masked) JSON and its metadata; :class:`MalformedAnswer` if it has none."""
        raise NotImplementedError

    def check_answer(self, answer: Any) -> Any:
        """A cached answer as the caller gets it; :class:`MalformedAnswer` if it cannot be used."""
        raise NotImplementedError

    # --- sending --------------------------------------------------------------------------------------------

    def payload_key(self, payload: Any, params: Mapping[str, Any]) -> str:
        """The cache key of one request: sha256 of the format, the model, the payload and the parameters."""
        identity = {"format": self.cache_format, "model": self.model, self.payload_field: payload, "params": params}
        blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def request_many(
        self, payloads: Sequence[Any], params: Mapping[str, Any], description: str, show: bool
    ) -> list[Any]:
        """Answer many requests: cached ones from disk, the rest concurrently, each cached on arrival.

        Identical requests are sent once. When a request fails for good, the requests not yet started are
        cancelled, those in flight are awaited (their answers get cached), and the error is raised.

        Args:
            payloads: The :attr:`payload_field` of each request (JSON-able).
            params: Further request fields, sent with every request and part of the cache key.
            description: The progress bar's label.
            show: Whether to show the progress bar.

        Returns:
            One answer per payload, in input order.

        Raises:
            EndpointError: A request failed for good (the message names the URL, status and server message).
            ValueError: ``params`` holds ``model``, the payload field or ``stream`` (set by the client).
        """
        reserved = {"model", self.payload_field, "stream"} & set(params)
        if reserved:
            raise ValueError(f"request params {sorted(reserved)} are set by {type(self).__name__}, not by the caller")
        keys = [self.payload_key(payload, params) for payload in payloads]
        answers: dict[str, Any] = {}
        todo: dict[str, Any] = {}
        for key, payload in zip(keys, payloads, strict=True):
            if key in answers or key in todo:
                continue
            cached = self._load(key)
            if cached is None:
                todo[key] = payload
            else:
                answers[key] = cached
        with self._lock:
            self.stats.cache_hits += len(answers)
        if len(payloads) > 1:
            logger.info(
                "%s <%s>: %d requests, %d from cache, %d to send",
                self.label.capitalize(),
                self.model,
                len(keys),
                len(answers),
                len(todo),
            )
        if todo:
            self.probe()
            answers |= self._fetch_all(todo, params, description, show)
        return [answers[key] for key in keys]

    def probe(self) -> None:
        """One cheap request (``GET {base_url}/models``) before the first request that is not cached.

        A server that is down, a wrong ``base_url`` or a refused key then fails in one line at once, instead of
        after every retry of every request in flight (34 s with the defaults). A server without ``/models``
        (404, 405, 501) passes: the requests themselves will tell. Once a run, and never with a full cache.

        Raises:
            EndpointError: The server cannot be reached, or it refuses the key (401, 403).
        """
        if self._probed:
            return
        url = f"{self.base_url}/models"
        try:
            response = self._http.get(url, headers=self._headers(), timeout=min(self.timeout_s, PROBE_TIMEOUT_S))
        except httpx.TransportError as exc:  # timeouts included
            problem = self._redact(f"{type(exc).__name__}: {exc}")
            raise EndpointError(
                f"cannot reach {self.base_url} ({problem}): is the server running, and is base_url right?"
            ) from None
        if response.status_code in (401, 403):
            raise EndpointError(
                f"{self.base_url} refused the request (HTTP {response.status_code}: {self._server_message(response)}); "
                f"check the key in ${self.api_key_env}",
                response.status_code,
            )
        self._probed = True

    def _fetch_all(
        self, todo: dict[str, Any], params: Mapping[str, Any], description: str, show: bool
    ) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        bar = progress_bar()
        bar.disable = not show
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo)), thread_name_prefix="endpoint")
        try:
            with bar:
                task = bar.add_task(description, total=len(todo), rate="")
                futures: dict[Future[Any], str] = {
                    pool.submit(self._fetch, key, payload, params): key for key, payload in todo.items()
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

    def _fetch(self, key: str, payload: Any, params: Mapping[str, Any]) -> Any:
        request = {"model": self.model, self.payload_field: payload, **params}
        answer, meta = self._post(request)
        with self._lock:
            self.stats.fetched += 1
        if self.cache_dir is not None:
            record = {"format": self.cache_format, "key": key, "request": request, self.answer_field: answer, **meta}
            record["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                atomic_write_text(self._path(key), json.dumps(record, ensure_ascii=False, indent=1) + "\n")
            except OSError as exc:
                # The answer is in memory; a lost cache entry costs one request on a later run, not this run.
                logger.warning("Could not write %s cache file %s: %s", self.label, self._path(key), exc)
        return answer

    def _post(self, request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Send one request with retries; return the answer and its metadata."""
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
                raise EndpointError(f"POST {self.url} failed with HTTP {status} (not retried): {message}", status)
            return self._read(response)
        attempts = self.max_retries + 1
        raise EndpointError(f"POST {self.url} failed after {attempts} attempts; last: {problem}", None)

    def _headers(self) -> dict[str, str]:
        """The bearer key, where there is one: the only place it leaves this object."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        # Jitter spreads the retries of many threads hit by the same outage or rate limit.
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s) * random.uniform(0.5, 1.0)

    def _read(self, response: httpx.Response) -> tuple[Any, dict[str, Any]]:
        try:
            return self.parse(self._mask(response.json()))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, MalformedAnswer) as exc:
            body = self._redact(response.text)[:300]  # masked before cutting, so no piece of the key is left
            raise EndpointError(
                self._redact(
                    f"POST {self.url} answered HTTP {response.status_code} without {self.answer_description()} "
                    f"({type(exc).__name__}: {exc}); body starts {body!r}"
                ),
                response.status_code,
            ) from None

    def answer_description(self) -> str:
        """What :meth:`parse` reads, for the error when a response lacks it."""
        return self.answer_field

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

    # --- the cache ------------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> Any:
        """The cached answer for ``key``, or ``None`` when absent or corrupt (a corrupt file is reported)."""
        if self.cache_dir is None:
            return None
        path = self._path(key)
        try:
            return self._decode(path.read_bytes(), key)
        except FileNotFoundError:
            return None
        except (OSError, MalformedAnswer) as exc:
            logger.warning("Corrupt %s cache file %s: %s; requesting it again", self.label, path, exc)
            with self._lock:
                self.stats.cache_corrupt += 1
            return None

    def _decode(self, raw: bytes, key: str) -> Any:
        try:
            record = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError included
            raise MalformedAnswer(f"unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(record, dict) or record.get("format") != self.cache_format:
            raise MalformedAnswer(f"not a {self.label} cache record of format {self.cache_format}")
        request = record.get("request")
        if not isinstance(request, dict):
            raise MalformedAnswer("no request")
        answer = self.check_answer(record.get(self.answer_field))
        params = {k: v for k, v in request.items() if k not in ("model", self.payload_field)}
        if request.get("model") != self.model or self.payload_key(request.get(self.payload_field), params) != key:
            raise MalformedAnswer("its stored request does not hash to its name")
        return answer


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
