"""The OpenAI-compatible backend against a real local HTTP server (tests/openai_server.py)."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cai.backends import Backend, load_backend
from cai.backends._openai import LOGPROB_FLOOR, OpenAIBackend, parse_openai_spec
from cai.errors import BackendError, InputError
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest
from openai_server import FakeOpenAIServer, Reply, chat_reply, logprobs_reply

Make = Callable[..., OpenAIBackend]
FAST: dict[str, Any] = {"timeout": 2.0, "max_retries": 2, "backoff": 0.01}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


@pytest.fixture
def make(server: FakeOpenAIServer) -> Iterator[Make]:
    made: list[OpenAIBackend] = []

    def _make(**options: Any) -> OpenAIBackend:
        b = OpenAIBackend(f"openai:test-model@{server.base_url}", **{**FAST, **options})
        made.append(b)
        return b

    yield _make
    for b in made:
        b.close()


def users(*texts: str) -> list[GenerationRequest]:
    return [GenerationRequest.user(t) for t in texts]


# -- spec --------------------------------------------------------------------------------------


def test_spec_with_base_url() -> None:
    assert parse_openai_spec("openai:qwen2.5-7b@http://127.0.0.1:8000/v1") == (
        "qwen2.5-7b",
        "http://127.0.0.1:8000/v1",
    )
    assert parse_openai_spec("openai:meta-llama/Llama-3.1-8B") == ("meta-llama/Llama-3.1-8B", None)


def test_base_url_from_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    b = OpenAIBackend("openai:m")
    assert b.base_url == "http://127.0.0.1:9/v1"
    b.close()
    monkeypatch.delenv("OPENAI_BASE_URL")
    b = OpenAIBackend("openai:m")
    assert b.base_url == "https://api.openai.com/v1"
    b.close()


@pytest.mark.parametrize(
    "spec", ["openai:", "openai", "openai:m@", "openai:m@localhost:8000", "openai:a b@http://x"]
)
def test_malformed_spec_names_it(spec: str) -> None:
    with pytest.raises(InputError, match=repr(spec).replace("(", r"\(")):
        OpenAIBackend(spec)


def test_registry_resolves_openai(server: FakeOpenAIServer) -> None:
    b = load_backend(f"openai:test-model@{server.base_url}", **FAST)
    try:
        assert isinstance(b, OpenAIBackend)
        assert isinstance(b, Backend)
        assert b.generate(users("hi"), SamplingParams())[0].text == "echo: hi"
    finally:
        b.close()


# -- generate ----------------------------------------------------------------------------------


def test_generate_keeps_request_order(server: FakeOpenAIServer, make: Make) -> None:
    # Earlier requests answer later, so completion order is the reverse of request order.
    for i in range(6):
        server.script(f"q{i}", chat_reply(f"answer {i}", delay=0.05 * (6 - i)))
    out = make().generate(users(*(f"q{i}" for i in range(6))), SamplingParams())
    assert [g.text for g in out] == [f"answer {i}" for i in range(6)]
    assert all(g.finish_reason == "stop" and g.error is None for g in out)


def test_request_body_carries_sampling_settings(server: FakeOpenAIServer, make: Make) -> None:
    params = SamplingParams(
        max_new_tokens=17,
        temperature=0.7,
        top_p=0.9,
        seed=42,
        stop=("END",),
        repetition_penalty=1.2,
    )
    req = GenerationRequest(
        messages=(Message(role="system", content="be kind"), Message(role="user", content="hi"))
    )
    make(api_key="sk-test").generate([req], params)
    (got,) = server.received
    assert got.path == "/v1/chat/completions"
    assert got.body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}],
        "max_tokens": 17,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["END"],
        "repetition_penalty": 1.2,
    }
    assert got.headers["Authorization"] == "Bearer sk-test"


def test_no_api_key_sends_no_authorization(
    server: FakeOpenAIServer, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make().generate(users("hi"), SamplingParams())
    assert "Authorization" not in server.received[0].headers
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    make().generate(users("hi"), SamplingParams())
    assert server.received[1].headers["Authorization"] == "Bearer sk-env"


def test_prefill_is_a_continued_assistant_message(server: FakeOpenAIServer, make: Make) -> None:
    req = GenerationRequest(messages=(Message(role="user", content="hi"),), prefill="Sure, ")
    make().generate([req], SamplingParams())
    make(prefill_extensions=False).generate([req], SamplingParams())
    with_ext, without = (r.body for r in server.received)
    assert with_ext["messages"][-1] == {"role": "assistant", "content": "Sure, "}
    assert with_ext["continue_final_message"] is True
    assert with_ext["add_generation_prompt"] is False
    assert without["messages"][-1] == {"role": "assistant", "content": "Sure, "}
    assert "continue_final_message" not in without and "add_generation_prompt" not in without


def test_finish_reason_usage_and_stop(server: FakeOpenAIServer, make: Make) -> None:
    server.script("long", chat_reply("cut off", "length", prompt_tokens=11, completion_tokens=2))
    server.script("filtered", chat_reply("", "content_filter"))
    server.script("stopper", chat_reply("keep this END drop this"))
    out = make().generate(
        users("long", "filtered", "stopper", "one two three four"),
        SamplingParams(max_new_tokens=3, stop=("END",)),
    )
    assert (out[0].text, out[0].finish_reason) == ("cut off", "length")
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (11, 2)
    assert out[1].finish_reason == "stop"
    assert (out[2].text, out[2].finish_reason) == ("keep this ", "stop")
    assert (out[3].text, out[3].finish_reason) == ("echo: one two", "length")


def test_empty_batch(make: Make) -> None:
    assert make().generate([], SamplingParams()) == []
    assert make().score([]) == []


# -- failures ----------------------------------------------------------------------------------


def test_5xx_is_retried_until_success(server: FakeOpenAIServer, make: Make) -> None:
    server.script("flaky", Reply(status=500), Reply(status=503), chat_reply("finally"))
    out = make().generate(users("ok", "flaky"), SamplingParams())
    assert [g.text for g in out] == ["echo: ok", "finally"]
    assert server.hits("flaky") == 3


def test_5xx_gives_up_after_max_retries(server: FakeOpenAIServer, make: Make) -> None:
    server.script("down", Reply(status=502, body={"error": {"message": "bad gateway"}}))
    out = make(max_retries=2).generate(users("down", "fine"), SamplingParams())
    assert out[0].finish_reason == "error"
    assert out[0].error is not None
    assert "request 0" in out[0].error and "HTTP 502: bad gateway" in out[0].error
    assert "3 attempts" in out[0].error
    assert out[1].text == "echo: fine"
    assert server.hits("down") == 3


def test_4xx_is_not_retried(server: FakeOpenAIServer, make: Make) -> None:
    server.script("bad", Reply(status=400, body={"error": {"message": "context too long"}}))
    out = make().generate(users("fine", "bad", "fine too"), SamplingParams())
    assert [g.finish_reason for g in out] == ["stop", "error", "stop"]
    err = out[1].error
    assert err == (
        f"request 1: POST {server.base_url}/chat/completions: HTTP 400: context too long"
    )
    assert server.hits("bad") == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<html>oops</html>", "not JSON"),
        ({"object": "chat.completion"}, "no choices"),
        ({"choices": [{"text": "completion-style"}]}, "no message"),
        ([1, 2, 3], "not a JSON object"),
        (
            {"choices": [{"message": {"content": "x"}}, {"message": {"content": "y"}}]},
            "2 choices, expected 1",
        ),
    ],
)
def test_garbage_response_is_retried_then_an_error_naming_the_request(
    server: FakeOpenAIServer, make: Make, body: Any, expected: str
) -> None:
    server.script("garbage", Reply(body=body))
    out = make().generate(users("fine", "garbage"), SamplingParams())
    assert out[0].text == "echo: fine"
    assert out[1].finish_reason == "error"
    assert out[1].error is not None
    assert out[1].error.startswith(f"request 1: POST {server.base_url}/chat/completions")
    assert expected in out[1].error
    assert "\n" not in out[1].error
    attempts = FAST["max_retries"] + 1
    assert f"gave up after {attempts} attempts" in out[1].error
    assert server.hits("garbage") == attempts


def test_garbage_once_then_a_good_answer_is_the_good_answer(
    server: FakeOpenAIServer, make: Make
) -> None:
    server.script(
        "flaky",
        Reply(body="<html>oops</html>"),
        Reply(body={"choices": []}),
        chat_reply("echo: flaky"),
    )
    out = make().generate(users("flaky"), SamplingParams())
    assert out[0].text == "echo: flaky" and out[0].finish_reason == "stop"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.5])
def test_a_logprob_that_is_not_a_log_probability_is_never_a_score(
    server: FakeOpenAIServer, make: Make, bad: float
) -> None:
    server.script("which", logprobs_reply({"A": bad, "B": -2.0}))
    with pytest.raises(BackendError, match="not a log-probability"):
        make().score([ScoreRequest(messages=users("which")[0].messages, candidates=("A", "B"))])


def test_timeout_is_retried_then_an_error(server: FakeOpenAIServer, make: Make) -> None:
    server.script("slow", chat_reply("too late", delay=1.5))
    start = time.monotonic()
    out = make(timeout=0.2, max_retries=1).generate(users("slow", "fast"), SamplingParams())
    assert time.monotonic() - start < 1.2
    assert out[0].finish_reason == "error"
    assert out[0].error is not None and "Timeout" in out[0].error
    assert out[1].text == "echo: fast"
    assert server.hits("slow") == 2


def test_connection_refused_is_an_error_not_an_exception() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend(f"openai:m@http://127.0.0.1:{port}/v1", **FAST)
    try:
        out = b.generate(users("a", "b"), SamplingParams())
    finally:
        b.close()
    assert [g.finish_reason for g in out] == ["error", "error"]
    assert out[1].error is not None
    assert out[1].error.startswith(f"request 1: POST http://127.0.0.1:{port}/v1/chat/completions")
    assert "ConnectError" in out[1].error


def test_429_honours_retry_after(server: FakeOpenAIServer, make: Make) -> None:
    server.script("busy", Reply(status=429, headers={"Retry-After": "0.4"}), chat_reply("now"))
    start = time.monotonic()
    out = make(backoff=0.01).generate(users("busy"), SamplingParams())
    assert out[0].text == "now"
    assert time.monotonic() - start >= 0.4
    assert server.hits("busy") == 2


def test_429_with_http_date_in_the_past_retries_at_once(
    server: FakeOpenAIServer, make: Make
) -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    server.script("busy", Reply(status=429, headers={"Retry-After": past}), chat_reply("now"))
    start = time.monotonic()
    assert make(backoff=5.0).generate(users("busy"), SamplingParams())[0].text == "now"
    assert time.monotonic() - start < 2.0


def test_concurrency_limit_is_honoured(server: FakeOpenAIServer, make: Make) -> None:
    server.delay = 0.1
    out = make(concurrency=3).generate(users(*(f"q{i}" for i in range(12))), SamplingParams())
    assert [g.text for g in out] == [f"echo: q{i}" for i in range(12)]
    assert server.max_in_flight == 3


# -- score -------------------------------------------------------------------------------------


def test_score_reads_top_logprobs(server: FakeOpenAIServer, make: Make) -> None:
    server.script("first", logprobs_reply({"A": -0.1, " B": -2.5, "C": -4.0}))
    server.script("second", logprobs_reply({"B": -0.2, "A": -1.9}, delay=0.1))
    reqs = [
        ScoreRequest(
            messages=(Message(role="user", content=text),),
            prefill="The answer is (",
            candidates=("A", "B", "Z"),
        )
        for text in ("second", "first")
    ]
    assert make().score(reqs) == [[-1.9, -0.2, LOGPROB_FLOOR], [-0.1, -2.5, LOGPROB_FLOOR]]
    body = server.received[0].body
    assert body["max_tokens"] == 1
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["messages"][-1] == {"role": "assistant", "content": "The answer is ("}
    assert body["continue_final_message"] is True


def test_score_without_logprobs_raises(server: FakeOpenAIServer, make: Make) -> None:
    req = ScoreRequest(messages=(Message(role="user", content="x"),), candidates=("A", "B"))
    with pytest.raises(BackendError, match="no logprobs"):
        make().score([req])


def test_score_http_failure_raises_naming_the_request(server: FakeOpenAIServer, make: Make) -> None:
    server.script("bad", Reply(status=404, body={"error": {"message": "no such model"}}))
    reqs = [
        ScoreRequest(messages=(Message(role="user", content=t),), candidates=("A",))
        for t in ("first", "bad")
    ]
    server.script("first", logprobs_reply({"A": -0.5}))
    with pytest.raises(BackendError, match=r"request 1: POST .* HTTP 404: no such model"):
        make().score(reqs)
