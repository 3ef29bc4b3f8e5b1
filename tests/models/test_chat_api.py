import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from http_fakes import send_json
from ragdistill.models.chat_api import ChatAPIError, ChatClient

KEY_ENV = "RAGDISTILL_TEST_CHAT_KEY"
KEY = "sk-test-0f9e8d7c6b5a-SECRET"


class FakeChatServer:
    """A real HTTP server on 127.0.0.1 speaking chat completions; answers ``echo: <last message>``.

    ``script`` holds ``(status, payload, headers)`` for the next responses (then the echo resumes);
    ``delay(body)`` gives seconds to sleep before answering.
    """

    def __init__(self):
        self.requests = []
        self.script = []
        self.delay = lambda body: 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True  # a handler still sleeping past a client timeout must not block close
        self.httpd.fake = self
        self.httpd.handle_error = lambda request, address: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path, headers, body):
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if self.script:
                return self.script.pop(0)
        return 200, ok("echo: " + body["messages"][-1]["content"]), {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with fake.lock:
            fake.in_flight += 1
            fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
        try:
            time.sleep(fake.delay(body))
            status, payload, headers = fake.answer(self.path, dict(self.headers), body)
        finally:
            with fake.lock:
                fake.in_flight -= 1
        with contextlib.suppress(OSError):  # the client gave up (timeout test)
            send_json(self, status, payload, headers)

    def do_GET(self):
        fake = self.server.fake
        if not getattr(fake, "serves_get", False):  # BaseHTTPRequestHandler's own answer: 501
            self.send_error(501)
            return
        status, payload, _ = fake.answer(self.path, dict(self.headers), {"messages": [{"content": ""}]})
        if status == 200:
            payload = {"object": "list", "data": [{"id": "tiny-chat", "object": "model"}]}
        send_json(self, status, payload)

    @staticmethod
    @contextlib.contextmanager
    def answering_get(fake):
        """Let ``GET /v1/models`` reach ``fake.answer`` (scripted like POSTs) within the block."""
        fake.serves_get = True
        try:
            yield
        finally:
            fake.serves_get = False

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    fake = FakeChatServer()
    fake.thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


@pytest.fixture
def make_client(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    clients = []

    def make(**kwargs):
        settings = {
            "base_url": server.base_url,
            "model": "tiny-chat",
            "api_key_env": KEY_ENV,
            "cache_dir": tmp_path / "chat_cache",
            "max_concurrency": 4,
            "timeout_s": 5.0,
            "max_retries": 2,
            "backoff_s": 0.01,
            "progress": False,
        }
        client = ChatClient(**(settings | kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def conversation(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def ok(content):
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def sent_contents(server):
    return [r["body"]["messages"][-1]["content"] for r in server.requests]


def error(status, message, headers=None):
    return status, {"error": {"message": message, "type": "test"}}, headers or {}


def test_answers_come_back_in_input_order_under_concurrency(server, make_client):
    n = 12
    # Later requests answer sooner, so completion order is the reverse of input order.
    server.delay = lambda body: 0.02 * (n - int(body["messages"][-1]["content"][1:]))
    client = make_client(max_concurrency=4, progress=True)
    answers = client.complete_many([conversation(f"q{i}") for i in range(n)], temperature=0.0, max_tokens=8)
    assert answers == [f"echo: q{i}" for i in range(n)]
    assert 1 < server.peak_in_flight <= 4
    body = server.requests[0]["body"]
    assert body["model"] == "tiny-chat" and body["temperature"] == 0.0 and body["max_tokens"] == 8
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_server_errors_and_rate_limits_are_retried(server, make_client):
    server.script = [error(500, "overloaded"), error(429, "slow down", {"Retry-After": "0"})]
    client = make_client(max_retries=2)
    assert client.complete(conversation("hi")) == "echo: hi"
    assert len(server.requests) == 3
    assert client.stats.retries == 2 and client.stats.http_requests == 3


def test_client_error_fails_at_once_naming_status_and_message(server, make_client):
    server.script = [error(400, "maximum context length is 8 tokens")]
    client = make_client(max_retries=3)
    with pytest.raises(ChatAPIError, match=r"HTTP 400.*maximum context length is 8 tokens") as info:
        client.complete(conversation("a long prompt"))
    assert info.value.status == 400
    assert len(server.requests) == 1


def test_retries_used_up_raise_with_the_last_problem(server, make_client):
    server.script = [error(503, "down")] * 3
    with pytest.raises(ChatAPIError, match=r"after 3 attempts.*HTTP 503: down"):
        make_client(max_retries=2).complete(conversation("hi"))


def test_timeouts_raise_a_clear_error_after_retries(server, make_client):
    server.delay = lambda body: 3.0
    client = make_client(timeout_s=0.2, max_retries=1)
    start = time.perf_counter()
    with pytest.raises(ChatAPIError, match="failed after 2 attempts; last: timed out") as info:
        client.complete(conversation("slow"))
    assert info.value.status is None
    assert time.perf_counter() - start < 2.5  # two attempts of 0.2 s, not one of 3 s
    assert client.stats.http_requests == 2


def test_a_server_that_is_not_there_fails_at_once_without_retries(make_client):
    """The probe before the first uncached request: one line, no 34 s of retries over every request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=3, backoff_s=1.0)
    start = time.perf_counter()
    with pytest.raises(
        ChatAPIError, match=rf"^cannot reach http://127.0.0.1:{port}/v1 \(ConnectError.*is the server running"
    ):
        client.complete_many([conversation("hi"), conversation("there")])
    assert time.perf_counter() - start < 1.0 and client.stats.http_requests == 0


def test_a_refused_key_fails_at_the_probe_naming_the_variable(server, make_client):
    server.script.append(error(401, "invalid api key"))
    client = make_client()
    with (
        _Handler.answering_get(server),
        pytest.raises(
            ChatAPIError, match=rf"refused the request \(HTTP 401: invalid api key\); check the key in \${KEY_ENV}"
        ),
    ):
        client.complete(conversation("hi"))
    assert client.stats.http_requests == 0


def test_the_probe_runs_once_and_never_with_a_full_cache(server, make_client):
    client = make_client()
    with _Handler.answering_get(server):
        client.complete_many([conversation("a"), conversation("b")])
        client.complete(conversation("c"))
    assert [r["path"] for r in server.requests].count("/v1/models") == 1
    rerun = make_client()  # same cache dir: every answer cached, nothing sent, no probe either
    with _Handler.answering_get(server):
        rerun.complete_many([conversation("a"), conversation("b")])
    assert [r["path"] for r in server.requests].count("/v1/models") == 1


def test_connection_lost_after_the_probe_is_retried_then_reported(server, make_client):
    client = make_client(max_retries=1)
    server.script += [error(503, "overloaded"), error(503, "still overloaded")]
    with pytest.raises(ChatAPIError, match="after 2 attempts; last: HTTP 503"):
        client.complete(conversation("hi"))


def test_second_call_and_rerun_hit_the_cache_without_http(server, make_client):
    requests = [conversation(f"q{i}") for i in range(5)]
    first = make_client().complete_many(requests, temperature=0.0)
    assert len(server.requests) == 5
    client = make_client()  # a rerun: a new client on the same cache
    assert client.complete_many(requests, temperature=0.0) == first
    assert len(server.requests) == 5
    assert client.stats.cache_hits == 5 and client.stats.http_requests == 0
    client.complete_many(requests[:1], temperature=0.7)  # other params are another request
    assert len(server.requests) == 6


def test_identical_requests_are_sent_once(server, make_client):
    answers = make_client().complete_many([conversation("same")] * 3 + [conversation("other")])
    assert answers == ["echo: same"] * 3 + ["echo: other"]
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: b"\xff\xfe not json",
        lambda raw: raw.replace(b"q0", b"qX"),  # the stored request no longer hashes to the file name
        lambda raw: b"[]",
    ],
    ids=["truncated", "binary", "tampered", "not_a_record"],
)
def test_corrupt_cache_file_is_reported_and_fetched_again(server, make_client, tmp_path, caplog, corrupt):
    make_client().complete_many([conversation("q0"), conversation("q1")])
    files = sorted((tmp_path / "chat_cache").rglob("*.json"))
    assert len(files) == 2
    target = next(f for f in files if b"q0" in f.read_bytes())
    target.write_bytes(corrupt(target.read_bytes()))
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="ragdistill.models.chat_api"):
        assert client.complete_many([conversation("q0"), conversation("q1")]) == ["echo: q0", "echo: q1"]
    assert len(server.requests) == 3
    assert client.stats.cache_corrupt == 1 and client.stats.cache_hits == 1
    assert any("Corrupt chat cache file" in r.getMessage() and target.name in r.getMessage() for r in caplog.records)
    assert json.loads(target.read_bytes())["content"] == "echo: q0"  # repaired on disk


def test_failure_keeps_answers_already_received(server, make_client):
    # One at a time, so the script meets q0, q1, q2 in order; q1 fails for good.
    server.script = [(200, ok("echo: q0"), {}), error(400, "bad")]
    requests = [conversation(f"q{i}") for i in range(3)]
    with pytest.raises(ChatAPIError, match="HTTP 400"):
        make_client(max_concurrency=1).complete_many(requests)
    first_run = sent_contents(server)
    assert first_run[:2] == ["q0", "q1"]  # q2 was either cancelled or answered (and cached) before the raise
    assert make_client().complete_many(requests) == ["echo: q0", "echo: q1", "echo: q2"]
    rerun = sent_contents(server)[len(first_run) :]
    assert rerun == (["q1"] if "q2" in first_run else ["q1", "q2"])


def test_api_key_is_sent_as_bearer_and_never_leaks(server, make_client, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    server.script = [error(500, "retry me"), error(401, f"Incorrect API key provided: {KEY}")]
    client = make_client(max_retries=2)
    with pytest.raises(ChatAPIError) as info:
        client.complete(conversation("q0"))
    assert "HTTP 401" in str(info.value) and KEY not in str(info.value) and "***" in str(info.value)
    client.complete_many([conversation("q1"), conversation("q2")])
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    files = list((tmp_path / "chat_cache").rglob("*"))
    assert any(f.is_file() for f in files)
    assert all(KEY.encode() not in f.read_bytes() for f in files if f.is_file())
    assert caplog.records
    assert all(KEY not in r.getMessage() and KEY not in str(r.args) for r in caplog.records)
    assert KEY not in repr(client) and KEY_ENV in repr(client)
    assert KEY not in json.dumps(client.stats.metrics())


def test_missing_key_variable_is_a_clear_error(server, monkeypatch):
    monkeypatch.delenv("RAGDISTILL_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match=r"RAGDISTILL_NO_SUCH_KEY .*not set"):
        ChatClient(server.base_url, "m", api_key_env="RAGDISTILL_NO_SUCH_KEY")


def test_no_key_sends_no_authorization(server):
    with ChatClient(server.base_url, "m", api_key_env=None, progress=False) as client:
        assert client.complete(conversation("hi")) == "echo: hi"
    assert "Authorization" not in server.requests[0]["headers"]


def test_answer_without_content_is_a_clear_error(server, make_client):
    server.script = [(200, {"choices": []}, {})]
    with pytest.raises(ChatAPIError, match=r"without choices\[0\]\.message\.content"):
        make_client().complete(conversation("hi"))


@pytest.mark.parametrize("param", ["model", "stream"])
def test_reserved_params_are_rejected(make_client, param):
    with pytest.raises(ValueError, match="set by ChatClient"):
        make_client().complete(conversation("hi"), **{param: True})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"base_url": "localhost:8000/v1"}, "http:// or https://"),
    ],
)
def test_bad_settings_raise(make_client, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_client(**kwargs)


def test_no_cache_dir_always_asks(server, make_client, tmp_path: Path):
    client = make_client(cache_dir=None)
    client.complete(conversation("hi"))
    client.complete(conversation("hi"))
    assert len(server.requests) == 2
    assert not (tmp_path / "chat_cache").exists()
