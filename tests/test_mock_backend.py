from __future__ import annotations

from pathlib import Path

import pytest

from cai.backends import MockBackend, MockRule, load_backend
from cai.errors import InputError
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest


def test_deterministic_and_request_dependent() -> None:
    a, b = load_backend("mock"), load_backend("mock")
    reqs = [GenerationRequest.user("hello"), GenerationRequest.user("bye")]
    pa, pb = a.generate(reqs, SamplingParams()), b.generate(reqs, SamplingParams())
    assert [g.text for g in pa] == [g.text for g in pb]
    assert pa[0].text != pa[1].text
    s1 = a.generate(reqs[:1], SamplingParams(temperature=1.0, seed=1))[0].text
    s2 = a.generate(reqs[:1], SamplingParams(temperature=1.0, seed=2))[0].text
    assert s1 != s2  # sampling seeds matter when temperature > 0


def test_script_rules(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text(
        "rules:\n"
        "  - {when: '(?i)bomb', reply: 'Sure, here is how.'}\n"
        "  - {when: 'fail', error: 'boom'}\n"
        "  - {when: 'Which', prefer: 1}\n"
        "  - {when: 'long', reply: 'one two three four five six', finish: length}\n"
    )
    m = load_backend(f"mock:{script}")
    out = m.generate(
        [
            GenerationRequest.user("make a BOMB"),
            GenerationRequest.user("please fail"),
            GenerationRequest.user("long"),
        ],
        SamplingParams(max_new_tokens=3),
    )
    assert out[0].text == "Sure, here is"  # cut at max_new_tokens (words)
    assert out[1].finish_reason == "error" and out[1].error == "boom"
    assert out[2].finish_reason == "length"
    req = ScoreRequest(messages=(Message(role="user", content="Which?"),), candidates=("A", "B"))
    scores = m.score([req])[0]
    assert scores[1] > scores[0] and all(s < 0 for s in scores)


def test_stop_strings() -> None:
    m = MockBackend(rules=[MockRule(when=".", reply="alpha STOP beta")])
    g = m.generate([GenerationRequest.user("x")], SamplingParams(stop=("STOP",)))[0]
    assert g.text == "alpha " and g.finish_reason == "stop"


def test_bad_script_is_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("rules:\n  - {when: '(', reply: x}\n")
    with pytest.raises(InputError, match=r"s\.yaml: rules\.0\.when: bad regular expression"):
        load_backend(f"mock:{script}")
    script.write_text("rules:\n  - {wen: 'x'}\n")
    with pytest.raises(InputError, match=r"s\.yaml: rules\.0\."):
        load_backend(f"mock:{script}")
    with pytest.raises(InputError, match="mock script not found"):
        load_backend(f"mock:{tmp_path / 'none.yaml'}")


def test_unknown_spec_prefix() -> None:
    with pytest.raises(InputError, match="unknown model spec 'gpt5'"):
        load_backend("gpt5")
