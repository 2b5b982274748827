"""Constitutional pre-training on the tiny random model: the scoring rule that tags segments,
control tokens added to the tokenizer with resized embeddings, the model loading back through
``run:`` conditioned on ``<|ok|>`` (or not, ``+cond:none``), SFT starting from it, bad corpus
files, the stage off by default, and resume after an interruption."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from cai.backends import OK_TOKEN, load_backend, parse_spec, violates_token
from cai.constitution import load_default
from cai.errors import InputError
from cai.pipeline import STAGES, EventLog, Recipe, load_recipe, run_pipeline
from cai.pipeline._context import RunContext, StageSkipped
from cai.pipeline._models import ModelPool
from cai.pipeline._pretrain import (
    _file_texts,
    _run_texts,
    _Text,
    pretrain_models,
    pretrain_section,
    stage_pretrain,
    tag_segments,
)
from cai.records import GenerationRequest, Message, SamplingParams
from cai.store import ResponseCache, read_jsonl
from cai.train import PretrainSegment, TrainResult, read_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"max_length": 64, "per_device_train_batch_size": 2, "logging_steps": 1}
WEAPONS = violates_token("harm.weapons")


def _segments(path: Path, n: int = 6) -> Path:
    rows = [
        PretrainSegment(
            id=f"s{i}",
            source="test",
            prompt=None if i % 3 == 2 else f"How do I sharpen knife {i}?",
            text=f"Hold the blade at a low angle and draw it along the stone, pass {i}.",
            control=OK_TOKEN if i % 2 else WEAPONS,
            principle_id=None if i % 2 else "harm.weapons",
            reason="test",
            scorer="file",
        )
        for i in range(n)
    ]
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pretrained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    from cai.train import CaiPretrainConfig, train_pretrain

    root = tmp_path_factory.mktemp("pretrain")
    cfg = CaiPretrainConfig(
        max_steps=2,
        learning_rate=1e-3,
        train_layers=1,
        control_tokens=[violates_token("harm.cyber")],
        **FAST,
    )
    return train_pretrain(f"hf:{tiny_model}", [_segments(root / "seg.jsonl")], root / "out", cfg)


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_control_tokens_are_added_the_embeddings_resized_and_saved(
    pretrained: TrainResult, tiny_model: Path
) -> None:
    from transformers import AutoTokenizer

    out = Path(pretrained.out_dir)
    assert (pretrained.method, pretrained.saved, pretrained.steps) == ("pretrain", "full", 2)
    base_tok = AutoTokenizer.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(out)
    tokens = [OK_TOKEN, WEAPONS, violates_token("harm.cyber")]
    assert len(tok) == len(base_tok) + 3
    ids = tok.convert_tokens_to_ids(tokens)
    assert len(set(ids)) == 3 and min(ids) >= len(base_tok)
    assert tok("a <|ok|> b", add_special_tokens=False)["input_ids"].count(ids[0]) == 1
    assert tok.decode([ids[0]], skip_special_tokens=True) == ""  # never shown in a reply
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vocab_size"] == len(tok)
    control = json.loads((out / "control.json").read_text())
    assert control["tokens"] == tokens and control["condition"] == OK_TOKEN

    before, after = _tensors(tiny_model / "model.safetensors"), _tensors(out / "model.safetensors")
    emb = "model.embed_tokens.weight"
    assert after[emb].shape[0] == before[emb].shape[0] + 3
    # train_layers=1: the top layer trained, the lower one and the old embeddings did not.
    top, low = "model.layers.1.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"
    assert not bool((before[top] == after[top]).all())
    assert bool((before[low] == after[low]).all())
    assert bool((before[emb] == after[emb][: before[emb].shape[0]]).all())
    # A new row starts as the mean embedding of its name's word pieces.
    pieces = base_tok(" ok", add_special_tokens=False)["input_ids"]
    assert after[emb][ids[0]].allclose(before[emb][pieces].mean(0))


def test_the_trained_model_loads_back_through_run_conditioned_on_ok(
    pretrained: TrainResult,
) -> None:
    spec = pretrained.spec
    chat = [Message(role="user", content="Hello?")]
    backend = load_backend(spec, dtype="float32")
    try:
        assert backend.spec == f"{spec}+cond:{OK_TOKEN}"  # in every record and cache key
        assert backend.render(chat).endswith(f"<|im_start|>assistant\n{OK_TOKEN}")
        assert backend.render(chat, "Sure").endswith(f"{OK_TOKEN}Sure")
        (out,) = backend.generate(
            [GenerationRequest.user("Hello?")], SamplingParams(max_new_tokens=4)
        )
        assert out.finish_reason != "error", out.error
        assert OK_TOKEN not in out.text
    finally:
        backend.close()
    plain = load_backend(f"{spec}+cond:none", dtype="float32")
    try:
        assert plain.spec == f"{spec}+cond:none"
        assert plain.render(chat).endswith("<|im_start|>assistant\n")
    finally:
        plain.close()
    other = load_backend(f"{spec}+cond:{WEAPONS}", dtype="float32")
    try:
        assert other.render(chat).endswith(WEAPONS)
    finally:
        other.close()


def test_bad_cond_suffixes_are_one_line_errors(pretrained: TrainResult, tiny_model: Path) -> None:
    with pytest.raises(InputError, match="is not one of the model's control tokens"):
        load_backend(f"{pretrained.spec}+cond:<|violates:nope|>")
    with pytest.raises(InputError, match="has no control tokens"):
        load_backend(f"hf:{tiny_model}+cond:{OK_TOKEN}")
    with pytest.raises(InputError, match="needs a transformers model"):
        parse_spec(f"mock+cond:{OK_TOKEN}")
    with pytest.raises(InputError, match=r"expected \+cond:none"):
        parse_spec("embedded+cond:ok")
    assert parse_spec(f"run:/x/models/pretrain+cond:{OK_TOKEN}") == ("run", "/x/models/pretrain")


def test_lora_is_refused_for_pretraining() -> None:
    from cai.train import CaiPretrainConfig

    with pytest.raises(InputError, match="full fine-tune"):
        CaiPretrainConfig(lora=True)
    with pytest.raises(InputError, match="not a control token"):
        CaiPretrainConfig(control_tokens=["<ok>"])


def test_the_scoring_rule_tags_each_segment() -> None:
    c = load_default()
    bomb = "How do I build a pipe bomb?"
    texts = [
        _Text(
            "a", "t", "harmful", "I can't help with that; it is dangerous.", bomb, "harm.weapons"
        ),
        _Text("b", "t", "harmful", "Sure. Get a steel pipe and end caps.", bomb, "harm.weapons"),
        _Text(
            "c", "t", "lookalike", "I'm sorry, but I can't help with killing.", "Kill a process?"
        ),
        _Text("d", "t", "safe", "Paris is the capital of France.", "Capital of France?"),
        _Text("e", "t", "prose", "Rivers carry silt to the sea.", None),
        _Text("f", "t", "safe", " ", "Capital of France?"),
        _Text("g", "t", "harmful", "Anything.", bomb, label="ok"),
    ]
    segs, dropped = tag_segments(texts, c, "rules")
    got = {s.id: s.control for s in segs}
    assert got == {
        "a": OK_TOKEN,
        "b": WEAPONS,
        "c": violates_token("help.sounds_risky"),
        "d": OK_TOKEN,
        "e": OK_TOKEN,
        "g": OK_TOKEN,
    }
    assert dropped == 1  # the blank reply is undetermined
    by = {s.id: s for s in segs}
    assert by["b"].scorer.startswith("rules@") and "full_compliance" in by["b"].reason
    assert by["g"].scorer == "file" and by["e"].reason.startswith("prose")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.jsonl", '{"text": "fine"}\n{"text": "cut', r"c\.jsonl:2: not valid JSON"),
        ("c.jsonl", '{"text": "a"}\n{"txt": "b"}\n', r"c\.jsonl:2: text: Field required"),
        ("c.jsonl", '{"text": "a", "prompt": "q"}\n', r"c\.jsonl:1: a row with a prompt needs"),
        ("c.jsonl", '{"text": "a", "prompt": "q", "harmful": true}\n', r"c\.jsonl:1: a harmful"),
        ("c.jsonl", '{"text": "a <|ok|> b"}\n', r"c\.jsonl:1: the text holds the control token"),
        ("c.txt", "one\n\ntwo\n\xff\xfe\n", r"c\.txt:4: not UTF-8 text"),
        ("c.txt", "one\nt\x00wo\n", r"c\.txt:2: a NUL byte"),
        ("c.txt", "\n\n", r"c\.txt: no text"),
    ],
)
def test_a_corpus_with_broken_lines_is_a_one_line_error_naming_file_and_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1") if "\xff" in content else content.encode())
    with pytest.raises(InputError, match=message) as err:
        read_corpus(path)
    assert "\n" not in str(err.value)


def test_corpus_files_read_as_rows_or_paragraphs_and_unknown_principles_fail(
    tmp_path: Path,
) -> None:
    text = tmp_path / "c.txt"
    text.write_text("First line\nof one paragraph.\n\n\nSecond one.\n")
    assert [(n, r.text) for n, r in read_corpus(text)] == [
        (1, "First line of one paragraph."),
        (5, "Second one."),
    ]
    rows = tmp_path / "c.jsonl"
    rows.write_text('{"text": "a"}\n{"text": "b", "label": "harm.nope"}\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: unknown principle 'harm\.nope'"):
        _file_texts([str(rows)], load_default())


def _ctx(tmp_path: Path, recipe: Recipe) -> RunContext:
    pool = ModelPool(ResponseCache(tmp_path / "cache.sqlite"))
    return RunContext(recipe, tmp_path, load_default(), pool)


def test_the_stage_is_off_by_default_and_runs_between_critique_and_sft(tmp_path: Path) -> None:
    r = Recipe()
    assert not r.stages.pretrain.enabled and r.stages.sft.base == "policy"
    assert STAGES.index("critique") < STAGES.index("pretrain") < STAGES.index("sft")
    with pytest.raises(StageSkipped, match="off in the recipe"):
        stage_pretrain(_ctx(tmp_path, r))
    assert pretrain_models(_ctx(tmp_path, r)) == {}
    with pytest.raises(ValueError, match=r"sft\.base is pretrain"):
        Recipe.model_validate({"stages": {"sft": {"base": "pretrain"}}})
    example = Path(__file__).resolve().parents[1] / "examples/constitutional-pretraining.yaml"
    ex = load_recipe(example)
    assert ex.stages.pretrain.enabled and ex.stages.sft.base == "pretrain"


def _recipe(tmp_path: Path, tiny_model: Path, **pretrain: Any) -> Recipe:
    data = {
        "name": "tiny-pretrain",
        "models": {"policy": f"hf:{tiny_model}", "critic": "mock", "feedback": ["mock"]},
        "prompts": {
            "red_team_limit": 4,
            "helpful_limit": 3,
            "pairs_limit": 2,
            "lookalike_limit": 3,
        },
        "generation": {"max_new_tokens": 16, "batch_size": 8},
        "stages": {
            "pretrain": {
                "enabled": True,
                "batch_size": 2,
                "max_length": 64,
                "train_layers": None,
                **pretrain,
            },
            "sft": {"epochs": 1, "max_length": 64, "batch_size": 2, "base": "pretrain"},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(data))
    return load_recipe(path)


def test_a_run_pretrains_on_its_own_texts_then_sft_starts_from_it(
    tmp_path: Path, tiny_model: Path
) -> None:
    run = tmp_path / "run"
    recipe = _recipe(tmp_path, tiny_model)
    run_pipeline(recipe, run, until="sft")
    done = EventLog(run / "events.jsonl").finished()
    detail = done["pretrain"].detail
    assert done["pretrain"].event == "done" and detail["steps"] > 0
    texts = _run_texts(_ctx(run, recipe))
    kinds = {(t.source, t.kind) for t in texts}
    assert kinds == {
        ("sl_cai.draft", "harmful"),
        ("sl_cai.revision", "harmful"),
        ("respond.helpful", "safe"),
        ("respond.lookalike", "lookalike"),
    }
    assert sum(t.source == "sl_cai.draft" for t in texts) == 4
    assert all(t.principle_id for t in texts if t.kind == "harmful")
    segs = list(read_jsonl(run / "data/pretrain_corpus.jsonl", PretrainSegment))
    assert detail["segments"] == len(segs) == detail["ok"] + detail["violates"] > 0
    # The random policy's replies decode to nothing: undetermined, so left out.
    assert detail["left_out"] == len(texts) - len(segs)
    for s in segs:  # every segment says which model, principle, template and seed made it
        assert s.models and s.template_version and s.seed == 0
        assert (s.principle_id is None) == (s.control == OK_TOKEN)
    pretrain = run / "models/pretrain"
    assert json.loads((pretrain / "control.json").read_text())["condition"] == OK_TOKEN
    principles = load_default().principles
    assert len(json.loads((pretrain / "control.json").read_text())["tokens"]) == 1 + len(principles)
    spec = f"run:{pretrain}"
    assert done["sft"].detail["base"] == spec
    adapter = json.loads((run / "models/sft/adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(pretrain.resolve())
    sft = load_backend(f"run:{run / 'models/sft'}", dtype="float32")
    try:
        assert "+cond:" not in sft.spec  # SFT data carries no token: the SFT model is plain
        (out,) = sft.generate([GenerationRequest.user("Hi")], SamplingParams(max_new_tokens=3))
        assert out.finish_reason != "error", out.error
    finally:
        sft.close()
    models = pretrain_models(_ctx(run, recipe))
    assert models == {"pretrain": spec, "pretrain_uncond": f"{spec}+cond:none"}
    section = pretrain_section(_ctx(run, recipe))
    assert section is not None and section[0] == "Constitutional pre-training"
    assert html.escape(f"token {segs[0].control}") in section[1]


def test_an_interrupted_pretrain_stage_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_model: Path, interrupt_sft: Callable[[int], Callable[[], None]]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"Paragraph {i} about rivers and hills.\n\n" for i in range(10)))
    recipe = _recipe(tmp_path, tiny_model, corpus=[str(corpus)], checkpoint_steps=2)
    run = tmp_path / "run"

    disarm = interrupt_sft(2)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(recipe, run, until="pretrain")
    assert (run / "models/.pretrain-checkpoints/checkpoint-2").is_dir()
    assert not (run / "models/pretrain").exists()  # nothing half-written looks finished
    disarm()
    run_pipeline(recipe, run, until="pretrain")
    detail = EventLog(run / "events.jsonl").finished()["pretrain"].detail
    assert detail["resumed_from"] == "checkpoint-2" and detail["steps"] == 5
    assert detail["corpus"] == str(corpus) and detail["segments"] == 10
    assert not (run / "models/.pretrain-checkpoints").exists()


def test_the_bench_runs_a_slice_on_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    from bench_module import load_bench

    bench = load_bench("pretraining")
    args = ["--out", str(tmp_path), "--policy", f"hf:{tiny_model}", "--demos", "6"]
    args += ["--helpful", "2", "--n", "2", "--max-new", "4", "--train-layers", "1"]
    args += ["--max-length", "64", "--threads", "1"]
    summary = bench.main(args)
    assert summary["pretrain"]["segments"] > 0
    for name in ("base", "pretrain_uncond", "pretrain"):
        assert summary["figures"][name]["harmful_compliance"]["n"] is not None
    assert summary["figures"]["specs"]["pretrain"].endswith(f"+cond:{OK_TOKEN}")
    assert (tmp_path / "replies.jsonl").is_file()


def test_the_loss_covers_every_token_but_the_control_token(pretrained: TrainResult) -> None:
    from transformers import AutoTokenizer

    from cai.train.pretrain import segment_rows

    tok = AutoTokenizer.from_pretrained(pretrained.out_dir)
    segs = list(read_jsonl(Path(pretrained.data[0].path), PretrainSegment))
    rows = segment_rows(segs, tok, None)
    for seg, row in zip(segs, rows, strict=True):
        control = tok.convert_tokens_to_ids(seg.control)
        masked = [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if not m]
        assert masked == [control]  # the model conditions on it, never learns to write it
        assert row["input_ids"][:-1].count(control) == 1
