"""The reward probe: the comparison layout it reads, fitting on the tiny model (layer and L2 by
cross-validation), the ``probe:DIR`` backend (mirrored orders, clear errors) and its place as the
default feedback model of ``cai run``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from cai.backends import load_backend, resolve_spec
from cai.constitution import load_default
from cai.errors import InputError
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest
from cai.scoring import (
    answer_request,
    compare_messages,
    comparison_pattern,
    p_slot_a,
    reward_probe_template,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASES = [
    ("How do I boil an egg?", "Put it in water.", "Boil it for 8 minutes."),
    ("Two lines\n\nof request {with braces}", "A: one\n\nQuestion: two", "(C) three"),
    ("USER: nested?", "Answer with the letter", "Here is a request from a user"),
]


@pytest.mark.parametrize(("prompt", "a", "b"), CASES)
def test_the_pattern_finds_the_request_and_both_replies_of_a_comparison(
    prompt: str, a: str, b: str
) -> None:
    c = load_default()
    principle = c.principles[3]
    chat = compare_messages(c, principle, prompt, a, b)
    found = re.compile(comparison_pattern(), re.DOTALL).fullmatch(chat[-1].content.strip())
    assert found is not None
    assert (found["prompt"], found["response_a"], found["response_b"]) == (prompt, a, b)
    assert found["question"] == principle.compare


GOOD = "I will not help with that, but here is a safer way to think about it."
BAD = "Sure! Step one, gather the tools. Step two, do it."


def _pairs(n: int) -> list[object]:
    from cai.train.probe import ProbePair

    out = []
    for i in range(n):
        a_better = i % 2 == 0
        good, bad = f"{GOOD} ({i})", f"{BAD} ({i})"
        a, b = (good, bad) if a_better else (bad, good)
        q = "Which reply is less harmful?"
        out.append(ProbePair(q, f"Request number {i}?", a, b, a_better))
    return out


@pytest.fixture(scope="module")
def probe_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cai.train.probe import ProbeConfig, train_reward_probe

    out = tmp_path_factory.mktemp("probe") / "feedback"
    result = train_reward_probe(
        f"hf:{tiny_model}",
        _pairs(20),  # type: ignore[arg-type]
        out,
        ProbeConfig(depths=(0.5, 1.0), l2=(1e-2, 1e-1), folds=4),
        user_turn=reward_probe_template().parts["user_turn"],
        request_pattern=comparison_pattern(),
    )
    assert result.saved == "probe" and result.spec == f"probe:{out.resolve()}"
    return out


def test_a_probe_is_fitted_by_cross_validation_and_saved_with_its_record(probe_dir: Path) -> None:
    probe = json.loads((probe_dir / "reward_probe.json").read_text())
    meta = json.loads((probe_dir / "train_meta.json").read_text())
    fit = probe["fit"]
    assert fit["layers_tried"] == [1, 2] and len(fit["grid"]) == 4  # 2 layers x 2 strengths
    assert probe["layer"] == fit["chosen"]["layer"] and fit["pairs"] == 20
    # the better replies share words the worse ones lack: even a random model's features
    # separate them, on folds the head was not fitted on
    assert fit["chosen"]["cv_accuracy"] >= 0.8
    assert meta["method"] == "reward" and meta["n_examples"] == 20 and meta["steps"] == 0
    assert fit["folds"] == 4


def test_a_quick_trial_fits_a_probe_on_fewer_folds_and_too_few_pairs_is_one_line(
    tiny_model: Path, tmp_path: Path
) -> None:
    from cai.train.probe import ProbeConfig, train_reward_probe

    kw = {
        "user_turn": reward_probe_template().parts["user_turn"],
        "request_pattern": comparison_pattern(),
    }
    cfg = ProbeConfig(depths=(1.0,), l2=(1e-1,))
    train_reward_probe(f"hf:{tiny_model}", _pairs(4), tmp_path / "p", cfg, **kw)  # type: ignore[arg-type]
    assert json.loads((tmp_path / "p/reward_probe.json").read_text())["fit"]["folds"] == 2
    with pytest.raises(InputError, match="needs at least 4 pairs, got 3"):
        train_reward_probe(f"hf:{tiny_model}", _pairs(3), tmp_path / "q", cfg, **kw)  # type: ignore[arg-type]


def test_the_probe_backend_prefers_the_better_reply_in_both_orders(probe_dir: Path) -> None:
    c = load_default()
    backend = load_backend(f"probe:{probe_dir}")
    p = c.principles[0]
    good, bad = f"{GOOD} (new)", f"{BAD} (new)"
    first = answer_request(compare_messages(c, p, "A new request?", good, bad))
    second = answer_request(compare_messages(c, p, "A new request?", bad, good))
    s1, s2 = backend.score([first, second])
    for s in (s1, s2):
        assert math.isclose(math.exp(s[0]) + math.exp(s[1]), 1.0, rel_tol=1e-9)
    pa1, pa2 = p_slot_a(s1), p_slot_a(s2)
    assert pa1 is not None and pa2 is not None
    assert pa1 > 0.5 and math.isclose(pa1 + pa2, 1.0, rel_tol=1e-9)  # no position bias
    backend.close()


def test_the_probe_backend_refuses_what_it_cannot_answer(probe_dir: Path) -> None:
    backend = load_backend(f"probe:{probe_dir}")
    odd = ScoreRequest(messages=(Message(role="user", content="Hello"),), candidates=("A", "B"))
    with pytest.raises(InputError, match="request 0 is not a two-reply comparison"):
        backend.score([odd])
    with pytest.raises(InputError, match="cannot generate"):
        backend.generate([GenerationRequest(messages=odd.messages)], SamplingParams())
    with pytest.raises(InputError, match="a reward probe, not a chat model: load it as probe:"):
        resolve_spec(f"run:{probe_dir}")
    with pytest.raises(InputError, match=r"reward_probe\.json: no such file"):
        load_backend(f"probe:{probe_dir.parent}")
