"""Training the evaluators (critic and feedback model) on demonstrations: the chats they are
trained on, the loss mask, top-layer LoRA, the stages in `cai run` (skip reasons, the adapter
cache, resume after an interruption) and bad demonstration files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cai.constitution import (
    load_comparison_demonstrations,
    load_critique_demonstrations,
    load_default,
)
from cai.critique import demonstration_chat
from cai.critique._templates import critique_request, revision_request
from cai.errors import InputError
from cai.pipeline import STAGES, EventLog, Recipe, load_recipe, run_pipeline
from cai.pipeline._context import RunContext, StageSkipped
from cai.pipeline._evaluators import stage_train_critic
from cai.pipeline._models import ModelPool
from cai.scoring import compare_template, comparison_chat
from cai.store import ResponseCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_evaluator_stages_run_before_critique() -> None:
    order = list(STAGES)
    assert order.index("train_critic") < order.index("train_feedback") < order.index("critique")
    r = Recipe()
    assert r.stages.train_critic.enabled and r.stages.train_feedback.enabled


def test_a_critic_demonstration_is_the_chat_the_stage_sends_with_both_turns_answered() -> None:
    c = load_default()
    demo = load_critique_demonstrations(constitution=c)[0]
    chat = demonstration_chat(c, demo)
    p = c.principle(demo.principle_id)
    crit = critique_request(c, p, demo.prompt, demo.draft, (), "sl_cai_compact")
    rev = revision_request(c, p, demo.prompt, demo.draft, demo.critique, (), "sl_cai_compact")
    # What the trained critic is trained on starts with exactly what it is later sent.
    assert tuple(chat[: len(crit.messages)]) == crit.messages
    assert tuple(chat[:-1]) == rev.messages
    assert [m.role for m in chat] == ["user", "assistant", "user", "assistant"]
    assert chat[1].content == f"{crit.prefill} {demo.critique}"
    assert chat[3].content == f"{rev.prefill} {demo.revision}"
    assert p.critique in chat[0].content and p.revision in chat[2].content
    assert not any(m.role == "system" for m in chat)  # the compact template has none


def test_the_principle_in_the_input_comes_from_the_constitution_given() -> None:
    c = load_default()
    demo = load_critique_demonstrations(constitution=c)[0]
    p = c.principle(demo.principle_id)
    changed = c.model_copy(
        update={
            "principles": [
                x.model_copy(update={"critique": "Say whether it is kind."}) if x.id == p.id else x
                for x in c.principles
            ]
        }
    )
    chat = demonstration_chat(changed, demo)
    assert "Say whether it is kind." in chat[0].content and p.critique not in chat[0].content


def test_a_comparison_demonstration_is_answered_with_its_letter() -> None:
    c = load_default()
    demos = load_comparison_demonstrations(constitution=c)
    for demo in demos[:20]:
        chat = comparison_chat(c, demo)
        assert chat[-1].role == "assistant"
        want = compare_template().render("few_shot_answer", letter=demo.label.upper())
        assert chat[-1].content == want
        assert chat[-1].content.startswith(compare_template().parts["answer_prefill"])
        assert demo.response_a in chat[-2].content and demo.response_b in chat[-2].content


def test_the_loss_mask_covers_every_assistant_turn_and_nothing_else(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from cai.records import SFTExample
    from cai.train.sft import assistant_turn_rows

    tok = AutoTokenizer.from_pretrained(tiny_model)
    c = load_default()
    demo = load_critique_demonstrations(constitution=c)[3]
    ex = SFTExample(id=demo.id, messages=demonstration_chat(c, demo))
    (row,) = assistant_turn_rows([ex], tok, None)
    kept = tok.decode(
        [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m]
    )
    assert demo.critique in kept and demo.revision in kept
    assert demo.prompt not in kept and demo.draft not in kept
    assert kept.count("<|im_end|>") == 2  # each turn learns to stop
    (short,) = assistant_turn_rows([ex], tok, 20)
    assert len(short["input_ids"]) == len(short["completion_mask"]) == 20


def test_lora_layers_adapts_only_the_top_layers() -> None:
    from cai.train._common import LoraFields, lora_config

    cfg = lora_config(LoraFields(lora_layers=3), "causal", 10, ["q_proj", "v_proj"])
    assert cfg.layers_to_transform == [7, 8, 9]
    assert set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert lora_config(LoraFields(), "causal", 10, ["q_proj"]).target_modules == "all-linear"
    with pytest.raises(InputError, match="lora_layers"):
        lora_config(LoraFields(lora_layers=0), "causal", 10, ["q_proj"])


def _ctx(tmp_path: Path, recipe: Recipe) -> RunContext:
    pool = ModelPool(ResponseCache(tmp_path / "cache.sqlite"))
    return RunContext(recipe, tmp_path, load_default(), pool)


def test_a_critic_that_is_not_a_local_model_or_is_turned_off_is_used_as_given(
    tmp_path: Path,
) -> None:
    r = Recipe.model_validate({"models": {"critic": "openai:big@http://127.0.0.1:9/v1"}})
    with pytest.raises(StageSkipped, match="not a local transformers model: used as given"):
        stage_train_critic(_ctx(tmp_path, r))
    r = Recipe.model_validate({"stages": {"train_critic": {"enabled": False}}})
    with pytest.raises(StageSkipped, match="off in the recipe: the critic is embedded as given"):
        stage_train_critic(_ctx(tmp_path, r))


def test_a_bad_demonstrations_file_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    good = load_critique_demonstrations()[0].model_dump(exclude_none=True)
    path = tmp_path / "demos.jsonl"
    path.write_text(
        json.dumps(good) + "\n" + json.dumps({**good, "id": "x2", "principle_id": "nope"}) + "\n"
    )
    r = Recipe.model_validate(
        {
            "models": {"critic": "hf:whatever"},
            "stages": {"train_critic": {"demonstrations": str(path)}},
        }
    )
    with pytest.raises(InputError, match=rf"{path}:2: principle 'nope' is not in constitution"):
        stage_train_critic(_ctx(tmp_path, r))


def _evaluator_recipe(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, **train: Any
) -> Recipe:
    """A tiny-model recipe training both evaluators, with the adapter cache under tmp_path."""
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path / "cache"))
    spec = f"hf:{tiny_model}"
    settings = {"limit": 6, "batch_size": 2, "max_length": 256, "checkpoint_steps": 1, **train}
    data = {
        "name": "evaluators",
        "models": {"policy": spec, "critic": spec, "feedback": [spec], "judge": None},
        "prompts": {
            "red_team_limit": 2,
            "helpful_limit": 1,
            "pairs_limit": 2,
            "lookalike_limit": 1,
        },
        "generation": {"max_new_tokens": 12, "batch_size": 8},
        "stages": {
            "train_critic": settings,
            "train_feedback": {**settings, "limit": 12, "probe_depths": [1.0]},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(data))
    return load_recipe(path)


def test_evaluators_train_then_the_run_uses_them_and_a_second_run_reuses_the_adapters(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _evaluator_recipe(tmp_path, tiny_model, monkeypatch)
    run = tmp_path / "run"
    run_pipeline(recipe, run, until="critique")
    done = EventLog(run / "events.jsonl").finished()
    for role, n, saved in (
        ("critic", 6, "adapter_config.json"),
        ("feedback", 12, "reward_probe.json"),
    ):
        detail = done[f"train_{role}"].detail
        assert done[f"train_{role}"].event == "done" and detail["cached"] is False
        assert detail["demonstrations"] == n
        assert (run / f"models/{role}/{saved}").exists()
        assert not (run / f"models/.{role}-checkpoints").exists()  # removed once saved
    assert done["train_feedback"].detail["method"] == "probe"
    assert done["train_feedback"].detail["layer"] == 2  # depth 1.0 of the tiny model's 2
    meta = json.loads((run / "models/critic/train_meta.json").read_text())
    assert meta["config"]["all_assistant_turns"] is True and meta["config"]["lora_layers"] == 4
    crit = done["critique"].detail
    assert crit["critic"] == f"run:{run / 'models/critic'}"
    assert crit["template"] == "sl_cai_compact/2"
    trace = [json.loads(x) for x in (run / "data/sl_cai.jsonl").read_text().splitlines()]
    assert trace and all(t["models"]["critic"].endswith("models/critic") for t in trace)
    run_pipeline(recipe, run, until="feedback")  # the probe is calibrated, then labels pairs
    probe = f"probe:{run / 'models/feedback'}"
    cal = json.loads((run / "calibration/feedback/calibration.json").read_text())
    assert cal["judge"] == probe and cal["position_bias"]["value"] == pytest.approx(0.5)
    labelled = [json.loads(x) for x in (run / "data/judgements.jsonl").read_text().splitlines()]
    assert labelled and all(j["comparisons"][0]["model"] == probe for j in labelled)

    again = tmp_path / "again"
    run_pipeline(recipe, again, until="train_feedback")
    done = EventLog(again / "events.jsonl").finished()
    assert done["train_critic"].detail["cached"] is True
    assert done["train_feedback"].detail["cached"] is True
    seed = recipe.model_copy(update={"seed": 1})
    run_pipeline(seed, tmp_path / "seed1", until="train_critic")
    assert (
        EventLog(tmp_path / "seed1/events.jsonl").finished()["train_critic"].detail["cached"]
        is False
    )  # another seed is another adapter


def test_a_run_interrupted_during_critic_training_resumes_from_its_checkpoint(
    tmp_path: Path,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    interrupt_sft: Callable[[int], Callable[[], None]],
) -> None:
    recipe = _evaluator_recipe(tmp_path, tiny_model, monkeypatch)
    run = tmp_path / "run"

    disarm = interrupt_sft(2)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(recipe, run, until="train_critic")
    assert (run / "models/.critic-checkpoints/checkpoint-2").is_dir()
    assert not (run / "models/critic").exists()  # nothing half-written looks finished
    disarm()
    run_pipeline(recipe, run, until="train_critic")
    detail = EventLog(run / "events.jsonl").finished()["train_critic"].detail
    assert detail["resumed_from"] == "checkpoint-2" and detail["steps"] == 3


def test_the_report_says_when_an_evaluator_was_not_trained(tmp_path: Path) -> None:
    from cai.pipeline import evaluator_status

    log = EventLog(tmp_path / "events.jsonl")
    assert all("has not finished" in s for _, s in evaluator_status(tmp_path))
    log.append("train_critic", "start")
    log.append("train_critic", "failed", error="out of memory")
    log.append("train_feedback", "skipped", reason="off in the recipe: the feedback is embedded")
    status = dict(evaluator_status(tmp_path))
    assert status["critic"] == "FAILED, not trained: out of memory"
    assert status["feedback"] == "not trained: off in the recipe: the feedback is embedded"
    log.append("train_critic", "start")
    log.append(
        "train_critic",
        "done",
        cached=True,
        demonstrations=176,
        source="critique.jsonl",
        steps=44,
        loss=1.25,
        base="embedded",
        template="sl_cai_compact/1",
    )
    status = dict(evaluator_status(tmp_path))
    assert status["critic"].startswith("reused from the adapter cache on 176 demonstrations")
    assert "final loss 1.250" in status["critic"]
