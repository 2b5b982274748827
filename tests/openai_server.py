"""A scriptable OpenAI-compatible HTTP server for tests: a real socket on 127.0.0.1, no mocks.

Owns: serving ``POST /v1/chat/completions`` (and ``GET /v1/models``) from a stdlib
``ThreadingHTTPServer`` on a free port in a background thread, recording what it received, and
counting how many requests were in flight at once.
Must not know: anything about ``cai``; it speaks only the wire format.

By default it echoes: the reply text is ``"echo: " + last user message`` (cut to ``max_tokens``
words, with finish_reason ``length`` when cut) and usage counts words. Tests script exceptions by a
substring of the last user message; the replies are used in order and the last one repeats::

    from openai_server import FakeOpenAIServer, Reply, chat_reply, logprobs_reply

    with FakeOpenAIServer() as server:
        server.script("flaky", Reply(status=500), Reply(status=500), chat_reply("ok"))
        server.script("which", logprobs_reply({"A": -0.1, "B": -2.5}))
        backend = OpenAIBackend(f"openai:test-model@{server.base_url}", backoff=0.01)
        ...
        assert server.max_in_flight <= 8
        assert server.received[0].body["temperature"] == 0.0
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Reply:
    """One scripted response. ``body``: a dict/list is sent as JSON, a str as raw text."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (to trip client timeouts or test concurrency)."""
    cut: bool = False
    """Send the headers and half the body, then close the connection."""


@dataclass
class Received:
    """One request the server saw."""

    path: str
    body: Any
    headers: dict[str, str]


def chat_reply(
    text: str,
    finish_reason: str = "stop",
    *,
    prompt_tokens: int = 7,
    completion_tokens: int | None = None,
    delay: float = 0.0,
) -> Reply:
    """A successful chat completion with ``text``."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(text.split()) if completion_tokens is None else completion_tokens,
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }
    return Reply(body=body, delay=delay)


def logprobs_reply(top: dict[str, float], *, delay: float = 0.0) -> Reply:
    """A one-token completion whose first token's alternatives are ``top`` (token → logprob)."""
    ranked = sorted(top.items(), key=lambda kv: -kv[1])
    alternatives = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked]
    token, logprob = ranked[0] if ranked else ("", 0.0)
    reply = chat_reply(token, "length", completion_tokens=1, delay=delay)
    reply.body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": alternatives,
            }
        ]
    }
    return reply


def last_user(body: Any) -> str:
    """The content of the last user message of a chat request body ('' when none)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def echo(body: Any) -> Reply:
    """The default reply: echo the last user message, honouring max_tokens (in words)."""
    words = f"echo: {last_user(body)}".split()
    limit = body.get("max_tokens") if isinstance(body, dict) else None
    finish = "stop"
    if isinstance(limit, int) and len(words) > limit:
        words, finish = words[:limit], "length"
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    return chat_reply(" ".join(words), finish, prompt_tokens=prompt)


FAULTS = (
    "http_500",
    "http_429",
    "timeout",
    "cut_body",
    "not_json",
    "no_choices",
    "two_choices",
    "no_logprobs",
    "nan_logprobs",
)
"""What ``inject`` may do to a request instead of answering it (the last two only to requests
that ask for logprobs; a generation request gets ``no_choices`` in their place)."""


def faulty(kind: str, good: Reply, wants_logprobs: bool, timeout_delay: float) -> Reply:
    """``good`` turned into fault ``kind``."""
    if kind in ("no_logprobs", "nan_logprobs") and not wants_logprobs:
        kind = "no_choices"
    if kind == "http_500":
        return Reply(status=500)
    if kind == "http_429":
        return Reply(status=429, headers={"Retry-After": "0"})
    if kind == "timeout":
        return Reply(status=good.status, body=good.body, delay=timeout_delay)
    if kind == "cut_body":
        return Reply(status=good.status, body=good.body, cut=True)
    if kind == "not_json":
        return Reply(body="<html>502 Bad Gateway</html>")
    if kind == "no_choices":
        return Reply(body={"object": "chat.completion", "choices": []})
    body = json.loads(json.dumps(good.body))
    if kind == "two_choices":
        wrong = {"index": 1, "message": {"role": "assistant", "content": "WRONG"}}
        body["choices"] = [dict(wrong, index=0), *body["choices"]]
    elif kind == "no_logprobs":
        body["choices"][0].pop("logprobs", None)
    elif kind == "nan_logprobs":
        entry = body["choices"][0]["logprobs"]["content"][0]
        entry["logprob"] = float("nan")
        for alt in entry.get("top_logprobs") or []:
            alt["logprob"] = float("nan")
    return Reply(body=body)


class FakeOpenAIServer:
    """Context manager: ``base_url`` is ``http://127.0.0.1:PORT/v1`` while it is open."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        """Extra seconds every request waits (on top of a scripted reply's own delay)."""
        self.faults: dict[str, int] = {}
        """Faults sent so far, by kind (see ``inject``)."""
        self._inject: tuple[float, Any, tuple[str, ...], float] | None = None
        self._per_request: tuple[int, dict[str, int]] | None = None
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._rules: list[tuple[str, list[Reply]]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------------

    def script(self, trigger: str, *replies: Reply) -> None:
        """Requests whose last user message contains ``trigger`` get ``replies`` in order."""
        if not replies:
            raise ValueError("script() needs at least one reply")
        with self._lock:
            self._rules.append((trigger, list(replies)))

    def inject(
        self,
        rate: float,
        *,
        seed: int = 0,
        kinds: tuple[str, ...] = FAULTS,
        timeout_delay: float = 1.0,
        per_request: bool = False,
    ) -> None:
        """From now on answer each chat request, with probability ``rate``, with a fault drawn
        from ``kinds`` instead (seeded; ``timeout_delay`` is how long a "timeout" waits).

        By default the draws come from one seeded sequence in arrival order, so which request
        meets which fault depends on thread timing. With ``per_request`` the draw for the n-th
        attempt of a request body depends only on (seed, body, n): the same requests fail
        however a concurrent client orders them."""
        import random

        with self._lock:
            self._inject = (rate, random.Random(seed), kinds, timeout_delay)
            self._per_request = (seed, {}) if per_request else None

    def _maybe_fault(self, body: Any, good: Reply) -> Reply:
        with self._lock:
            if self._inject is None:
                return good
            rate, rng, kinds, timeout_delay = self._inject
            if self._per_request is not None:
                import random

                seed, seen = self._per_request
                key = json.dumps(body, sort_keys=True)
                seen[key] = n = seen.get(key, 0) + 1
                rng = random.Random(f"{seed}:{n}:{key}")
            if rng.random() >= rate:
                return good
            kind = rng.choice(kinds)
            self.faults[kind] = self.faults.get(kind, 0) + 1
        return faulty(kind, good, bool(body.get("logprobs")), timeout_delay)

    def hits(self, trigger: str) -> int:
        """How many chat requests had ``trigger`` in their last user message."""
        with self._lock:
            return sum(trigger in last_user(r.body) for r in self.received)

    def _next_reply(self, body: Any) -> Reply:
        text = last_user(body)
        with self._lock:
            for trigger, queue in self._rules:
                if trigger in text:
                    return queue.pop(0) if len(queue) > 1 else queue[0]
        return echo(body)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return None

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(Reply(body={"object": "list", "data": [{"id": "fake", "object": "model"}]}))
        else:
            self._send(Reply(status=404, body={"error": {"message": f"no route {self.path}"}}))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        fake = self.fake
        with fake._lock:
            fake.received.append(Received(self.path, body, dict(self.headers.items())))
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            if self.path.rstrip("/") != "/v1/chat/completions":
                reply = Reply(status=404, body={"error": {"message": f"no route {self.path}"}})
            elif not isinstance(body, dict):
                reply = Reply(status=400, body={"error": {"message": "body is not a JSON object"}})
            else:
                reply = fake._maybe_fault(body, fake._next_reply(body))
            time.sleep(fake.delay + reply.delay)
        finally:
            # Counted down before the answer goes out, so a client that sends its next request
            # the moment it hears back is never counted twice.
            with fake._lock:
                fake.in_flight -= 1
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        body = reply.body
        if body is None and reply.status >= 400:
            body = {"error": {"message": f"scripted failure {reply.status}"}}
        if isinstance(body, str):
            payload, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        # The client may have given up (timeout) and closed the socket; that is expected.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if reply.cut:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)
