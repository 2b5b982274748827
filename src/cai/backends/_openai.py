"""The backend for any OpenAI-compatible chat server: vLLM, llama.cpp server, Ollama, hosted APIs.

Spec: ``openai:MODEL@BASE_URL`` (``openai:qwen2.5-7b@http://127.0.0.1:8000/v1``). Without
``@BASE_URL`` the base comes from ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``; the key
comes from the ``api_key`` argument, else ``OPENAI_API_KEY``, else none (fine for local servers).
``timeout``, ``max_retries`` and ``backoff``, when not given, come from ``CAI_OPENAI_TIMEOUT``,
``CAI_OPENAI_MAX_RETRIES`` and ``CAI_OPENAI_BACKOFF`` if set (a CLI run has no flags for them),
else 60 s, 3 and 0.5 s.

Owns: the HTTP calls (one ``POST {base}/chat/completions`` per request, at most ``concurrency`` in
flight over one shared ``httpx.Client``), retries with exponential backoff, and turning responses
into ``Generation`` records and candidate log-probabilities.
Must not know: caching (``CachedBackend`` wraps this), prompt templates or any workflow.

Failure policy. Connection errors, timeouts, 429 and 5xx are retried ``max_retries`` times, waiting
``backoff * 2**attempt`` seconds or the server's ``Retry-After`` (both capped at 60 s). Other 4xx
fail at once. ``generate`` never raises for one failed request: that request comes back with
``finish_reason="error"`` and a one-line ``error`` naming the request index, URL, status and
reason; the rest of the batch is unaffected. ``score`` has no per-request error channel, so it
raises ``BackendError`` naming the request instead.

Prefill. A request's ``prefill`` is sent as a trailing assistant message together with vLLM's
``"continue_final_message": true, "add_generation_prompt": false`` so the server continues that
message instead of opening a new turn. Servers that ignore unknown fields (llama.cpp, Ollama) still
see the trailing assistant message; hosted APIs that reject unknown fields need
``prefill_extensions=False``, which sends the message without the two flags.

Scoring. ``score`` asks for one token with ``top_logprobs=20`` after the prefill and gives each
candidate the log-probability of the best top token whose text, stripped of whitespace, equals the
stripped candidate; a candidate not among them gets ``LOGPROB_FLOOR``. This is exact for candidates
that are one token (``"A"``/``"B"``, ``"1"``/``"2"``), the way the feedback stage asks. Multi-token
candidates would need ``/completions`` with ``echo`` over the rendered chat template, which a client
cannot render, so they are not supported: they score ``LOGPROB_FLOOR``. A server that returns no
log-probabilities makes ``score`` raise ``BackendError``.

Garbage. A 2xx answer that is not a JSON object, has no choice or more than one, has no message,
or (for ``score``) no log-probabilities or a non-finite or positive one is retried like a 5xx, and
after the retries is the request's error: never a result.
"""

from __future__ import annotations

import email.utils
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from cai.errors import BackendError, InputError
from cai.records import Generation, GenerationRequest, Message, SamplingParams, ScoreRequest

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOGPROB_FLOOR = -30.0
"""Log-probability given to a candidate that is not among the server's top tokens."""
TOP_LOGPROBS = 20
"""How many alternatives score() asks for (the OpenAI API's maximum)."""
MAX_WAIT = 60.0
"""Upper bound, in seconds, on one wait between retries (backoff or Retry-After)."""

_SPEC = re.compile(r"openai:(?P<model>[^\s@][^\s]*?)(?:@(?P<base>https?://\S+))?")
_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


class _Failed(Exception):
    """One request failed for good; the message is the one-line error for the record."""


class _Garbage(Exception):
    """The server answered 2xx with something that is not a chat completion."""


def parse_openai_spec(spec: str) -> tuple[str, str | None]:
    """Split ``openai:MODEL[@BASE_URL]`` into model and base URL (None when absent)."""
    m = _SPEC.fullmatch(spec)
    if m is None or "@" in m["model"]:
        raise InputError(
            f"malformed model spec {spec!r}: expected openai:MODEL or openai:MODEL@BASE_URL "
            "(for example openai:qwen2.5-7b@http://127.0.0.1:8000/v1)"
        )
    return m["model"], m["base"]


class OpenAIBackend:
    """Talks to an OpenAI-compatible ``/chat/completions`` endpoint; see the module docstring."""

    def __init__(
        self,
        spec: str,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        concurrency: int = 8,
        backoff: float | None = None,
        prefill_extensions: bool = True,
    ) -> None:
        self.model, base = parse_openai_spec(spec)
        timeout = _setting(timeout, "CAI_OPENAI_TIMEOUT", 60.0, float)
        max_retries = _setting(max_retries, "CAI_OPENAI_MAX_RETRIES", 3, int)
        backoff = _setting(backoff, "CAI_OPENAI_BACKOFF", 0.5, float)
        if timeout <= 0 or max_retries < 0 or concurrency < 1 or backoff < 0:
            raise InputError(
                f"{spec}: need timeout > 0, max_retries >= 0, concurrency >= 1, backoff >= 0 "
                f"(got {timeout}, {max_retries}, {concurrency}, {backoff})"
            )
        self.spec = spec
        self.base_url = (base or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff = backoff
        self.prefill_extensions = prefill_extensions
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.spec!r})"

    # -- public interface ------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        """Continue each chat; a request that fails comes back with finish_reason 'error'."""

        stop = params.stop

        def one(i: int) -> Generation:
            req = requests[i]
            body: dict[str, Any] = {
                "model": self.model,
                "messages": self._messages(req.messages, req.prefill),
                "max_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "seed": params.seed,
                **self._prefill_flags(req.prefill),
            }
            if params.stop:
                body["stop"] = list(params.stop)
            if params.repetition_penalty != 1.0:
                body["repetition_penalty"] = params.repetition_penalty  # vLLM / llama.cpp extension
            try:
                return self._post(i, "/chat/completions", body, lambda d: _to_generation(d, stop))
            except _Failed as exc:
                return Generation(text="", finish_reason="error", error=str(exc))
            except _Garbage as exc:
                return Generation(text="", finish_reason="error", error=f"{self._where(i)}: {exc}")

        return self._map(one, len(requests))

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Log-probability of each candidate (one-token candidates; see the module docstring)."""

        def one(i: int) -> list[float]:
            req = requests[i]
            if any(not c.strip() for c in req.candidates):
                raise BackendError(f"score request {i}: cannot score an empty candidate")
            body: dict[str, Any] = {
                "model": self.model,
                "messages": self._messages(req.messages, req.prefill),
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
                **self._prefill_flags(req.prefill),
            }
            try:
                top = self._post(i, "/chat/completions", body, _top_logprobs)
            except _Failed as exc:
                raise BackendError(str(exc)) from None
            except _Garbage as exc:
                raise BackendError(f"{self._where(i)}: {exc}") from None
            scores = []
            for cand in req.candidates:
                want = cand.strip()
                hits = [lp for tok, lp in top if tok.strip() == want]
                scores.append(max(hits, default=LOGPROB_FLOOR))
            return scores

        return self._map(one, len(requests))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _map(self, fn: Callable[[int], _T], n: int) -> list[_T]:
        if n == 0:
            return []
        if n == 1 or self.concurrency == 1:
            return [fn(i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, n)) as pool:
            return list(pool.map(fn, range(n)))  # map keeps request order

    def _messages(self, messages: Sequence[Message], prefill: str) -> list[dict[str, str]]:
        out = [{"role": m.role, "content": m.content} for m in messages]
        if prefill:
            out.append({"role": "assistant", "content": prefill})
        return out

    def _prefill_flags(self, prefill: str) -> dict[str, bool]:
        if not (prefill and self.prefill_extensions):
            return {}
        return {"continue_final_message": True, "add_generation_prompt": False}

    def _where(self, index: int, path: str = "/chat/completions") -> str:
        return f"request {index}: POST {self.base_url}{path}"

    def _post(
        self, index: int, path: str, body: dict[str, Any], parse: Callable[[dict[str, Any]], _T]
    ) -> _T:
        """POST with retries and ``parse`` the JSON object; raise _Failed or _Garbage.

        A 2xx answer that cannot be parsed (not JSON, no choices, no or non-finite logprobs) is
        retried like a 5xx: a flaky server's garbage never becomes a result, and a server that
        always sends it fails after the retries with the reason."""
        url = self.base_url + path
        where = self._where(index, path)
        attempts = self.max_retries + 1
        reason = ""
        for attempt in range(attempts):
            wait: float | None = None
            try:
                resp = self._client.post(url, json=body)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                reason = f"no response: {type(exc).__name__}: {_line(str(exc)) or 'no detail'}"
            except httpx.HTTPError as exc:
                raise _Failed(f"{where}: {type(exc).__name__}: {_line(str(exc))}") from None
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    try:
                        return parse(_json_object(resp))
                    except _Garbage as exc:
                        if attempt + 1 == attempts:
                            raise _Garbage(f"{exc} (gave up after {attempts} attempts)") from None
                        reason = str(exc)
                        time.sleep(min(self.backoff * 2**attempt, MAX_WAIT))
                        continue
                reason = f"HTTP {status}: {_error_reason(resp)}"
                if status != 429 and status < 500:
                    raise _Failed(f"{where}: {reason}")
                wait = _retry_after(resp)
            if attempt + 1 < attempts:
                time.sleep(min(wait if wait is not None else self.backoff * 2**attempt, MAX_WAIT))
        raise _Failed(f"{where}: {reason} (gave up after {attempts} attempts)")


def _setting(value: _N | None, env: str, default: _N, kind: Callable[[str], _N]) -> _N:
    """``value``, else the environment variable ``env`` read as ``kind``, else ``default``."""
    if value is not None:
        return value
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InputError(f"{env}={raw!r}: expected a number") from None


def _line(text: str, limit: int = 200) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _error_reason(resp: httpx.Response) -> str:
    """The server's error message ({"error": {"message": ...}} or the raw body)."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _line(str(err))
    return _line(resp.text) or resp.reason_phrase or "no detail"


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds the server asks us to wait, from Retry-After (delta-seconds or an HTTP date)."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        raise _Garbage(
            f"HTTP {resp.status_code}: response is not JSON: {_line(resp.text)!r}"
        ) from None
    if not isinstance(data, dict):
        raise _Garbage(f"HTTP {resp.status_code}: response is not a JSON object")
    return data


def _first_choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = data.get("error")
        extra = f" (error: {_line(str(detail))})" if detail else ""
        raise _Garbage(f"response has no choices{extra}")
    if len(choices) != 1:  # one was asked for: which of several is the answer is unknown
        raise _Garbage(f"response has {len(choices)} choices, expected 1")
    return choices[0]


def _to_generation(data: dict[str, Any], stop: Sequence[str]) -> Generation:
    choice = _first_choice(data)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Garbage("choices[0] has no message")
    text = message.get("content")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _Garbage("choices[0].message.content is not a string")
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    for (
        s
    ) in stop:  # servers strip stop strings already; this keeps the promise for those that don't
        if s and s in text:
            text, finish = text.split(s, 1)[0], "stop"
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Generation(
        text=text,
        finish_reason=finish,
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _top_logprobs(data: dict[str, Any]) -> list[tuple[str, float]]:
    """(token, logprob) for the first generated token and its alternatives."""
    choice = _first_choice(data)
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        raise _Garbage(
            "the server returned no logprobs; score() needs a server that supports "
            "logprobs/top_logprobs on chat completions"
        )
    first = content[0]
    entries = [first, *(first.get("top_logprobs") or [])]
    out = []
    for e in entries:
        if isinstance(e, dict):
            tok, lp = e.get("token"), e.get("logprob")
            if isinstance(tok, str) and isinstance(lp, int | float) and not isinstance(lp, bool):
                if not math.isfinite(lp) or lp > 1e-6:
                    raise _Garbage(f"logprob of {tok!r} is {lp}, not a log-probability")
                out.append((tok, float(lp)))
    return out
