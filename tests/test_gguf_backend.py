"""The llama.cpp backend. Spec resolution and the install hint are tested everywhere; the ``slow``
tests run the embedded SmolLM2 GGUF file and skip where llama-cpp-python is not installed."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import test_backend_contract as contract
from cai.backends import backend_names, load_backend, parse_spec
from cai.backends._gguf import GGUFBackend
from cai.errors import BackendError, InputError, MissingDependencyError
from cai.records import GenerationRequest, SamplingParams, ScoreRequest

FRANCE = "What is the capital of France?"
GREEDY = SamplingParams(max_new_tokens=24)
# Under the template's default system prompt SmolLM2-135M's first answer token is a near tie
# ('L' -1.88 vs 'The' -1.97 here; the reverse in float32 transformers): llama.cpp's Q4_1 x Q8
# arithmetic tips it into "L'Étoile, la Cité...". A plain system prompt gives a clear answer.
SYSTEM = "You are a helpful assistant."


def ask(question: str) -> GenerationRequest:
    return GenerationRequest.user(question, system=SYSTEM)


def test_the_registry_resolves_the_gguf_prefix() -> None:
    assert "gguf" in backend_names()
    assert parse_spec("gguf:models/x.gguf") == ("gguf", "models/x.gguf")


def test_without_llama_cpp_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(MissingDependencyError, match=r"constitutional-ai\[llama\]") as info:
        load_backend(f"gguf:{model}")
    assert "llama-cpp-python" in str(info.value)


def test_a_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(InputError, match=r"nowhere\.gguf"):
        load_backend(f"gguf:{missing}")


@pytest.mark.parametrize("spec", ["gguf", "gguf:"])
def test_a_spec_without_a_path_is_an_input_error(spec: str) -> None:
    with pytest.raises(InputError, match="gguf:PATH"):
        load_backend(spec)


def test_a_file_that_is_not_gguf_is_an_input_error(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"bad\.gguf"):
        load_backend(f"gguf:{bad}")


# -- the embedded model (SmolLM2-135M-Instruct, Q4_1) -----------------------------------------


@pytest.fixture(scope="module")
def gguf() -> Iterator[GGUFBackend]:
    pytest.importorskip("llama_cpp")
    backend = GGUFBackend("gguf:embedded")
    yield backend
    backend.close()


@pytest.mark.slow
def test_greedy_answer_is_right(gguf: GGUFBackend) -> None:
    (out,) = gguf.generate([ask(FRANCE)], GREEDY)
    assert out.finish_reason in ("stop", "length"), out.error
    assert "Paris" in out.text
    assert out.prompt_tokens > 0 and out.completion_tokens > 0


@pytest.mark.slow
def test_passes_the_backend_contract(gguf: GGUFBackend) -> None:
    contract.test_generate_keeps_request_order(gguf)
    contract.test_score_returns_one_logprob_per_candidate(gguf)


@pytest.mark.slow
def test_batch_results_keep_request_order(gguf: GGUFBackend) -> None:
    questions = [FRANCE, "What is the capital of Germany?", FRANCE]
    outs = gguf.generate([ask(q) for q in questions], GREEDY)
    assert "Paris" in outs[0].text and "Berlin" in outs[1].text
    assert outs[2].text == outs[0].text  # the cached prefix changes nothing
    (alone,) = gguf.generate([ask(questions[1])], GREEDY)
    assert alone.text == outs[1].text


@pytest.mark.slow
def test_prefill_starts_the_assistant_turn(gguf: GGUFBackend) -> None:
    plain = GenerationRequest.user(FRANCE)
    prefilled = plain.model_copy(update={"prefill": "The capital of France is"})
    a, b = gguf.generate([plain, prefilled], SamplingParams(max_new_tokens=8))
    assert "Paris" in b.text
    assert not b.text.startswith("The capital")  # the prefill is not repeated
    # Same template on both paths: the prefilled prompt is the plain prompt plus the prefill.
    prefill_tokens = len(gguf._tokens("The capital of France is"))
    assert b.prompt_tokens == a.prompt_tokens + prefill_tokens


@pytest.mark.slow
def test_score_prefers_the_right_answer(gguf: GGUFBackend) -> None:
    req = ScoreRequest(
        messages=GenerationRequest.user(FRANCE).messages,
        prefill="The capital of France is",
        candidates=(" Paris", " Berlin", ""),
    )
    (scores,) = gguf.score([req])
    assert scores[0] > scores[1]
    assert scores[2] == 0.0


@pytest.mark.slow
def test_multi_token_scores_match_a_logits_all_model(gguf: GGUFBackend) -> None:
    import llama_cpp

    req = ScoreRequest(
        messages=GenerationRequest.user(FRANCE).messages,
        prefill="The capital of France is",
        candidates=(" Paris, the city of light", " Berlin"),
    )
    (scores,) = gguf.score([req])
    # Reference: llama-cpp-python's logits_all route, which this backend avoids. Fed the candidate
    # a token at a time, as score() does, it must agree to float precision; fed in one batch,
    # llama.cpp's batched kernels round differently (about 0.1 nat a token here), while a
    # misplaced position would be off by nats.
    prompt = gguf.render(req.messages, req.prefill)
    prompt_ids = gguf._tokens(prompt)
    ref = llama_cpp.Llama(str(gguf.path), n_ctx=512, logits_all=True, verbose=False)
    try:
        for cand, got in zip(req.candidates, scores, strict=True):
            ids = gguf._tokens(prompt + cand)
            assert len(ids) > len(prompt_ids) and ids[: len(prompt_ids)] == prompt_ids
            rows = range(len(prompt_ids) - 1, len(ids) - 1)  # row t predicts token t + 1
            ref.reset()
            ref.eval(prompt_ids)
            for token in ids[len(prompt_ids) :]:
                ref.eval([token])
            logprobs = llama_cpp.Llama.logits_to_logprobs(ref.scores[: len(ids)])  # [T, V]
            assert got == pytest.approx(sum(float(logprobs[t, ids[t + 1]]) for t in rows), abs=1e-3)
            ref.reset()
            ref.eval(ids)
            logprobs = llama_cpp.Llama.logits_to_logprobs(ref.scores[: len(ids)])
            assert got == pytest.approx(sum(float(logprobs[t, ids[t + 1]]) for t in rows), abs=0.5)
    finally:
        ref.close()


@pytest.mark.slow
def test_max_tokens_stop_strings_and_seeds(gguf: GGUFBackend) -> None:
    req = ask(FRANCE)
    (short,) = gguf.generate([req], SamplingParams(max_new_tokens=3))
    assert short.finish_reason == "length" and short.completion_tokens == 3
    (stopped,) = gguf.generate([req], SamplingParams(max_new_tokens=24, stop=("Paris",)))
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    hot = SamplingParams(max_new_tokens=16, temperature=1.0, seed=7)
    first = gguf.generate([GenerationRequest.user("Tell me a story.")] * 2, hot)
    assert first[0].text == first[1].text  # every request is sampled with the call's seed


@pytest.mark.slow
def test_repetition_penalty_breaks_a_loop(gguf: GGUFBackend) -> None:
    req = GenerationRequest.user("What's the capital of France?")  # greedy: "la France, la Fr..."
    plain, penalised = (
        gguf.generate([req], SamplingParams(max_new_tokens=40, repetition_penalty=p))[0].text
        for p in (1.0, 1.3)
    )
    repeats = [max(Counter(text.split()).values()) for text in (plain, penalised)]
    assert repeats[1] < repeats[0], (plain, penalised)


@pytest.mark.slow
def test_one_failed_request_does_not_sink_the_batch(gguf: GGUFBackend) -> None:
    too_long = GenerationRequest.user("word " * (gguf.n_ctx + 100))
    ok, bad = gguf.generate([ask(FRANCE), too_long], GREEDY)
    assert "Paris" in ok.text
    assert bad.finish_reason == "error" and bad.error is not None
    assert bad.error.startswith("request 1:") and "\n" not in bad.error


@pytest.mark.slow
def test_close_frees_the_model() -> None:
    pytest.importorskip("llama_cpp")
    backend = GGUFBackend("gguf:embedded", n_ctx=256)
    backend.close()
    backend.close()  # twice is fine
    with pytest.raises(BackendError, match="closed"):
        backend.generate([GenerationRequest.user(FRANCE)], GREEDY)
