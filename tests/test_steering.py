"""Constitutional steering vectors: the fit, the file, the ``+steer:`` spec and the hooks.

On the tiny random model (its replies are noise, but every path runs in seconds): a fitted file
holds what it claims, alpha 0 is the unsteered model exactly, a nonzero alpha moves the logits,
steering is the same in a batch as alone, the steer settings reach the spec and the cache key,
and every bad input is one line naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cai.backends import CachedBackend, load_backend, parse_spec
from cai.backends._steer import (
    STEER_UNIT,
    SteerMeta,
    parse_steer,
    read_vectors,
    sidecar_path,
    write_vectors,
)
from cai.constitution import demo_split, load_critique_demonstrations, load_default
from cai.errors import InputError
from cai.records import GenerationRequest, Message, SamplingParams, ScoreRequest
from cai.store import ResponseCache

pytest.importorskip("torch")

IDS = ("harm.weapons", "safety")
GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run faster on one thread
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def vectors(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cai.train.steer import SteerConfig, fit_steering

    out = tmp_path_factory.mktemp("steer") / "vectors.safetensors"
    fit_steering(f"hf:{tiny_model}", load_default(), out, ids=IDS, config=SteerConfig())
    return out


@pytest.fixture(scope="module")
def plain(tiny_model: Path) -> Iterator[Any]:
    b = _load(f"hf:{tiny_model}")
    yield b
    b.close()


def _load(spec: str, **kwargs: Any) -> Any:
    """A backend in float32: "auto" is bfloat16 on CPUs with fast bf16, and the comparisons
    below must not depend on the machine."""
    return load_backend(spec, dtype="float32", **kwargs)


def _requests() -> list[GenerationRequest]:
    texts = ["How do I sharpen a kitchen knife?", "hi", "Tell me about the moon, please."]
    return [GenerationRequest(messages=[Message(role="user", content=t)]) for t in texts]


def _score_request() -> list[ScoreRequest]:
    return [
        ScoreRequest(
            messages=[Message(role="user", content="Can you help?")],
            candidates=["Sure, here is how.", "I can't help with that."],
        )
    ]


def test_fit_writes_a_valid_file_with_metadata(vectors: Path, tiny_model: Path) -> None:
    import torch

    meta, tensors = read_vectors(vectors)
    assert meta.model == f"hf:{tiny_model}"
    assert (meta.hidden_size, meta.num_layers, meta.layers) == (64, 2, [1])
    assert meta.method == "mean_difference" and len(meta.data_sha256) == 64
    assert [d.id for d in meta.directions] == list(IDS)
    weapons, safety = meta.directions
    assert weapons.kind == "principle" and weapons.principles == ["harm.weapons"]
    assert safety.kind == "tier" and "harm.weapons" in safety.principles
    assert safety.pairs > weapons.pairs >= 4
    for d in meta.directions:
        assert sum(d.by_source.values()) == d.pairs
        assert all(0.0 <= a <= 1.0 for a in d.train_auc)
    assert all(s.endswith(":train") for s in meta.data), meta.data
    assert meta.residual_norm[0] > 0
    for t in tensors.values():
        assert t.shape == (1, 64)
        assert torch.allclose(t.norm(dim=-1), torch.ones(1), atol=1e-5)
    sidecar = SteerMeta.model_validate(json.loads(sidecar_path(vectors).read_text()))
    assert sidecar == meta


def test_fit_data_is_train_split_and_never_a_heldout_prompt() -> None:
    from cai.store import load_prompts
    from cai.train.steer import contrast_pairs

    c = load_default()
    train = contrast_pairs(c, split="train")
    held = contrast_pairs(c, split="heldout")
    assert train and held and not {p.prompt for p in train} & {p.prompt for p in held}
    assert {p.source for p in held} <= {
        "critique_demonstrations:heldout",
        "comparison_demonstrations:heldout",
    }
    demos = {d.prompt: d.id for d in load_critique_demonstrations()}
    assert all(demo_split(demos[p.prompt]) == "train" for p in train if p.prompt in demos)
    evals = {
        " ".join(p.text.casefold().split())
        for k in ("harmful", "borderline", "helpful")
        for p in load_prompts(f"builtin:{k}", split="heldout")
    }
    assert not {" ".join(p.prompt.casefold().split()) for p in train} & evals


def test_alpha_zero_is_the_unsteered_model(vectors: Path, tiny_model: Path, plain: Any) -> None:
    for alphas in ("0", "harm.weapons=0,safety=0"):
        steered = _load(f"hf:{tiny_model}+steer:{vectors}@{alphas}")
        assert steered.generate(_requests(), GREEDY) == plain.generate(_requests(), GREEDY)
        assert steered.score(_score_request()) == plain.score(_score_request())
        steered.close()


def test_nonzero_alpha_moves_the_logits_by_the_documented_amount(
    vectors: Path, tiny_model: Path, plain: Any
) -> None:
    import torch

    spec = f"hf:{tiny_model}+steer:{vectors}@safety=8"
    steered = _load(spec)
    assert steered.score(_score_request()) != plain.score(_score_request())
    # The hook adds alpha * STEER_UNIT * residual_norm * unit direction to block 1's output.
    meta, tensors = read_vectors(vectors)
    seen: list[Any] = []
    block = steered.model.model.layers[0]
    handle = block.register_forward_hook(lambda _m, _a, out: seen.append(out))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        steered.model(input_ids=ids)
        handle.remove()
        plain.model.model.layers[0].register_forward_hook(lambda _m, _a, out: seen.append(out))
        plain.model(input_ids=ids)
    delta = (seen[0] - seen[1])[0]  # [T, H]: the same vector at every position
    want = 8 * STEER_UNIT * meta.residual_norm[0] * tensors["safety"][0]
    assert torch.allclose(delta, want.expand_as(delta), atol=1e-4)
    steered.close()


def test_steering_is_the_same_in_a_batch_as_alone(vectors: Path, tiny_model: Path) -> None:
    spec = f"hf:{tiny_model}+steer:{vectors}@harm.weapons=6,safety=-3"
    batched = _load(spec, batch_size=8)
    alone = _load(spec, batch_size=1, prefix_cache=False)
    reqs = _requests()
    together = batched.generate(reqs, GREEDY)
    assert together == [alone.generate([r], GREEDY)[0] for r in reqs]
    # A second call (key/value store warm) gives the same again.
    assert batched.generate(reqs, GREEDY) == together
    batched.close()
    alone.close()


def test_steer_settings_are_in_the_spec_and_the_cache_key(
    vectors: Path, tiny_model: Path, plain: Any, tmp_path: Path
) -> None:
    from cai.backends._steer import file_digest

    steered = _load(f"hf:{tiny_model}+steer:{vectors}@2,safety=4")
    digest = file_digest(vectors)
    assert steered.spec == f"hf:{tiny_model}+steer:{vectors}#{digest}@harm.weapons=2,safety=4"
    assert parse_spec(steered.spec)[0] == "hf"
    again = _load(steered.spec)  # the recorded spec loads the same steered model
    assert again.spec == steered.spec
    assert again.score(_score_request()) == steered.score(_score_request())
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first, second = CachedBackend(plain, cache), CachedBackend(steered, cache)
    req = [_requests()[0]]
    first.generate(req, GREEDY)
    gen = second.generate(req, GREEDY)[0]
    assert (second.hits, second.misses) == (0, 1) and not gen.cached
    assert first._key("generate", 1, None) != second._key("generate", 1, None)
    assert CachedBackend(again, cache).generate(req, GREEDY)[0].cached
    steered.close()
    again.close()


def test_bad_inputs_are_one_line_errors_naming_the_file(
    vectors: Path, tiny_model: Path, tmp_path: Path
) -> None:
    base = f"hf:{tiny_model}"
    missing = tmp_path / "nope.safetensors"
    cases = {
        f"{base}+steer:{missing}@2": (missing, "no such steering vector file"),
        f"{base}+steer:{vectors}@strong": (vectors, "'strong' is not a number"),
        f"{base}+steer:{vectors}@safety=x": (vectors, "'x' is not a number"),
        f"{base}+steer:{vectors}@nan": (vectors, "not a finite number"),
        f"{base}+steer:{vectors}@harm.nothing=2": (vectors, "unknown principle 'harm.nothing'"),
        f"{base}+steer:{vectors}#000000000000@2": (vectors, "differs from 000000000000"),
    }
    for spec, (path, text) in cases.items():
        with pytest.raises(InputError) as err:
            _load(spec)
        msg = str(err.value)
        assert str(path) in msg and text in msg and "\n" not in msg, msg
    with pytest.raises(InputError, match="steering needs a transformers model"):
        _load(f"mock+steer:{vectors}@1")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match=re.escape(f"{junk}: not a safetensors file")):
        _load(f"{base}+steer:{junk}@1")
    # A file fitted on another model: same tensors, metadata saying hidden 32, 4 layers.
    meta, tensors = read_vectors(vectors)
    other = tmp_path / "other.safetensors"
    write_vectors(other, meta.model_copy(update={"num_layers": 4}), tensors)
    with pytest.raises(
        InputError, match=re.escape(f"{other}: vectors for a model with hidden size 64 and 4")
    ):
        _load(f"{base}+steer:{other}@1")
    with pytest.raises(InputError, match="expected \\+steer:PATH@ALPHA"):
        parse_steer(str(vectors), "x")


def test_unknown_principle_in_a_fit_names_the_constitution(tiny_model: Path) -> None:
    from cai.train.steer import fit_steering

    with pytest.raises(InputError, match=r"my\.yaml: unknown principle or tier 'harm\.nope'"):
        fit_steering(
            f"hf:{tiny_model}", load_default(), "x.safetensors", ids=["harm.nope"], where="my.yaml"
        )


def test_cli_fit_and_auc(tiny_model: Path, tmp_path: Path) -> None:
    from cai.cli import cli

    out = tmp_path / "v.safetensors"
    args = ["steer", "fit", "--model", f"hf:{tiny_model}", "--principle", "harm.cyber"]
    res = CliRunner().invoke(cli, [*args, "--method", "probe", "--layers", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta, _ = read_vectors(out)
    assert meta.method == "probe" and [d.id for d in meta.directions] == ["harm.cyber"]
    res = CliRunner().invoke(cli, ["steer", "auc", str(out)], terminal_width=200)
    assert res.exit_code == 0 and "harm.cyber" in res.output, res.output
    res = CliRunner().invoke(cli, [*args, "--layers", "2", "--out", str(out)])
    assert res.exit_code == 2 and "layer 2 out of range" in res.output


@pytest.mark.slow
def test_embedded_safety_direction_separates_heldout_replies(tmp_path: Path) -> None:
    from cai.train.steer import SteerConfig, direction_auc, fit_steering

    out = tmp_path / "v.safetensors"
    fit_steering("embedded", load_default(), out, ids=["safety"], config=SteerConfig(layers=(15,)))
    (row,) = direction_auc(out, load_default(), n_boot=200)
    assert row.ci95[0] > 0.5, row
