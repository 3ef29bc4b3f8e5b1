"""A fake OpenAI-compatible ``/v1/completions`` server whose echoed log-probabilities come from a real (tiny) LM.

Unlike a scripted fake, its numbers are the LM's own, so a test can compare a served teacher's scores with
the in-process teacher's on the same weights: an off-by-one in reading the echo changes every score.
``layout`` imitates one server's echo:

- ``llama_cpp``: special tokens are left out of the echo; the generated token is echoed unless it is special
  (then the completion text is empty) — llama-cpp-python's server;
- ``vllm``: every prompt token is echoed, then the generated token, special or not — vLLM and the OpenAI spec;
- ``shifted``: each echoed log-probability belongs to the token after it — a server that misreports, which
  the client cannot tell from the text, shown here to be caught by the in-process comparison;
- ``wrong_tokenizer``: token texts that do not spell the prompt — a server serving another tokenizer.

``no_logprobs`` answers without log-probabilities — a server that ignores ``echo``.

``generate_special`` forces the generated token to be the tokenizer's eos (special) token or an ordinary one.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from http_fakes import send_json


class FakeCompletionsServer:
    """Serve ``model`` + ``tokenizer`` at ``base_url``; count requests; start with :meth:`start`."""

    def __init__(self, model: Any, tokenizer: Any, layout: str = "llama_cpp", generate_special: bool = False) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.layout, self.generate_special = layout, generate_special
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeCompletionsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @torch.no_grad()
    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completions response to ``body`` (``echo`` + ``logprobs``, one generated token)."""
        with self.lock:
            self.requests.append(body)
            tokenizer, prompt = self.tokenizer, body["prompt"]
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            log_probs = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)  # [T, V]
        eos = tokenizer.eos_token_id
        generated = eos if self.generate_special else int(log_probs[-1].argsort(descending=True)[0])
        if generated == eos and not self.generate_special:
            generated = int(log_probs[-1].argsort(descending=True)[1])
        values: list[float | None] = [None] + [float(log_probs[i - 1, ids[i]]) for i in range(1, len(ids))]
        special = set(tokenizer.all_special_ids)
        entries = [(tokenizer.decode([i]), v, i in special) for i, v in zip(ids, values, strict=True)]
        generated_entry = (tokenizer.decode([generated]), float(log_probs[-1, generated]), generated in special)
        if self.layout in ("llama_cpp", "shifted", "wrong_tokenizer"):
            entries = [e for e in entries if not e[2]]
            if not generated_entry[2]:
                entries.append(generated_entry)
        else:
            entries.append(generated_entry)
        tokens = [e[0] for e in entries]
        token_logprobs = [e[1] for e in entries]
        if self.layout == "shifted":
            token_logprobs = [*token_logprobs[1:], None]
        if self.layout == "wrong_tokenizer":
            tokens = [t.upper() + "~" for t in tokens]
        completion = "" if generated_entry[2] else generated_entry[0]
        logprobs = {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": None}
        return {
            "object": "text_completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "text": prompt + completion,
                    "logprobs": None if self.layout == "no_logprobs" else logprobs,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1},
        }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake: FakeCompletionsServer = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/completions":
            send_json(self, 404, {"error": {"message": f"no route {self.path}"}})
        elif not body.get("echo") or not body.get("logprobs"):
            send_json(self, 400, {"error": {"message": "this fake only echoes"}})
        else:
            send_json(self, 200, fake.answer(body))

    def do_GET(self) -> None:
        send_json(self, 200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    def log_message(self, *args: Any) -> None:
        pass
