"""The test server's readiness check names a server that lists its model and then dies on its first completion.

That is how a llama.cpp built for instructions the machine refuses fails (SIGILL on the first forward pass,
after ``GET /v1/models`` answered); without the check the tests only saw "connection refused".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_server import LLMServerError, free_port, wait_until_ready

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, os, signal, sys

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": "smollm2"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            print("first completion: dying", flush=True)
            os.kill(os.getpid(), signal.SIGILL)

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def test_a_server_that_dies_on_its_first_completion_is_reported_with_its_signal(tmp_path: Path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    log_path = tmp_path / "server.log"
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, str(script), str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        with pytest.raises(LLMServerError) as failure:
            wait_until_ready(process, f"http://127.0.0.1:{port}/v1", None, 30.0, log_path)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    message = str(failure.value)
    assert process.returncode == -signal.SIGILL
    assert "on its first completion (killed by SIGILL)" in message
    assert "GGML_NATIVE=OFF" in message
    assert "first completion: dying" in message  # the log's tail is quoted
