"""One contract, every built-in backend: batch generate in request order, and score returns one
finite log-probability per candidate. The OpenAI-style backend talks to a real local server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from cai.backends import Backend, backend_names, load_backend
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest
from openai_server import FakeOpenAIServer, logprobs_reply

QUESTIONS = ["What is two plus two?", "Name a colour.", "Say hello in French, please."]


@pytest.fixture(params=["mock", "openai", "hf"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "mock":
        yield load_backend("mock")
    elif request.param == "openai":
        with FakeOpenAIServer() as server:
            server.script("Which", logprobs_reply({"A": -0.2, "B": -1.9}))
            b = load_backend(f"openai:m@{server.base_url}", backoff=0.01)
            yield b
            b.close()
    else:
        tiny = request.getfixturevalue("tiny_model")
        b = load_backend(f"hf:{tiny}", dtype="float32", batch_size=2)
        yield b
        b.close()


def test_every_prefix_in_the_registry_is_covered() -> None:
    assert {"mock", "openai", "hf", "embedded", "run"} <= set(backend_names())


def test_generate_keeps_request_order(backend: Backend) -> None:
    reqs = [GenerationRequest.user(q) for q in QUESTIONS]
    outs = backend.generate(reqs, SamplingParams(max_new_tokens=8))
    assert len(outs) == len(reqs)
    for g in outs:
        assert g.finish_reason in ("stop", "length"), g.error
        assert isinstance(g.text, str)
    alone = backend.generate(reqs[2:], SamplingParams(max_new_tokens=8))
    assert alone[0].text == outs[2].text  # greedy: the same answer alone or in a batch


def test_score_returns_one_logprob_per_candidate(backend: Backend) -> None:
    req = ScoreRequest(
        messages=(Message(role="user", content="Which is better, A or B?"),),
        prefill="The answer is ",
        candidates=("A", "B"),
    )
    (scores,) = backend.score([req])
    assert len(scores) == 2
    assert all(math.isfinite(s) and s <= 0 for s in scores)
