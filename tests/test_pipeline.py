"""`cai run` end to end on a tiny random model (policy) and mock critic, feedback and judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.cli import cli
from cai.errors import InputError
from cai.evaluate import MetricsFile
from cai.pipeline import STAGES, EventLog, Recipe, load_recipe, run_pipeline
from cai.records import Message, PreferenceRecord

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recipe(tmp_path: Path, tiny_model: Path, **extra: object) -> Path:
    data = {
        "name": "tiny",
        "models": {
            "policy": f"hf:{tiny_model}",
            "critic": "mock",
            "feedback": ["mock"],
            "judge": "mock",
        },
        "prompts": {"red_team_limit": 4, "helpful_limit": 3, "pairs_limit": 4},
        "generation": {"max_new_tokens": 40, "batch_size": 8},
        "stages": {
            "sft": {"epochs": 1, "max_length": 64, "batch_size": 2},
            "dpo": {"epochs": 1, "max_length": 64, "batch_size": 2},
            "evaluate": {"limit": 3, "max_new_tokens": 12},
        },
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def test_default_recipe_file_matches_the_built_in_defaults() -> None:
    assert load_recipe(REPO / "recipes" / "default.yaml") == Recipe()


def test_recipe_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nstages:\n  critique:\n    rounds: 0\n")
    with pytest.raises(InputError, match=r"r\.yaml:4: stages\.critique\.rounds: Input should"):
        load_recipe(bad)
    bad.write_text("name: x\nmodels:\n  polcy: embedded\n")
    with pytest.raises(InputError, match=r"r\.yaml:3: .*unknown key 'polcy'"):
        load_recipe(bad)


def test_run_end_to_end_then_resume_and_rerun_from_a_stage(
    tmp_path: Path, tiny_model: Path
) -> None:
    recipe = _recipe(tmp_path, tiny_model)
    run_dir = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", str(recipe), "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(run_dir / "report.html")
    for rel in (
        "data/prompts.jsonl",
        "data/sl_cai.jsonl",
        "data/sft.jsonl",
        "data/pairs.jsonl",
        "models/sft/train_meta.json",
        "metrics.json",
        "report.html",
    ):
        assert (run_dir / rel).exists(), rel
    finished = EventLog(run_dir / "events.jsonl").finished()
    assert set(finished) == set(STAGES)
    dpo = finished["dpo"]
    assert dpo.event == "done" or "preference" in dpo.detail["reason"]
    metrics = MetricsFile.model_validate_json((run_dir / "metrics.json").read_text())
    assert {"base", "sft"} <= set(metrics.models)
    raw = json.loads((run_dir / "metrics.json").read_text())
    assert set(raw["base"]) >= {"harmful_compliance", "over_refusal", "helpfulness_win_rate", "asi"}
    html = (run_dir / "report.html").read_text()
    for section in ("position bias", "Degenerate", "draft, critique, revision", "Recipe"):
        assert section in html

    # A rerun resumes: every stage is finished, nothing is appended to the data files.
    before = (run_dir / "data/sl_cai.jsonl").read_text()
    outcomes = run_pipeline(load_recipe(recipe), run_dir)
    assert all(o.status.endswith("earlier") for o in outcomes)
    assert (run_dir / "data/sl_cai.jsonl").read_text() == before

    # Feed hand-made preferences and rerun from dpo: DPO trains and is evaluated.
    prefs = [
        PreferenceRecord(
            id=f"p{i}",
            prompt=[Message(role="user", content=f"question {i}")],
            chosen=[Message(role="assistant", content="I can't help with that.")],
            rejected=[Message(role="assistant", content=f"Sure, step {i}: do it.")],
            soft_label=0.8,
            margin=1.2,
            principle_ids=["harm.weapons"],
            models={"policy": "x", "feedback": "mock"},
            template_version="compare/1",
            seed=0,
        )
        for i in range(4)
    ]
    (run_dir / "data/preferences.jsonl").write_text(
        "".join(p.model_dump_json() + "\n" for p in prefs)
    )
    outcomes = run_pipeline(load_recipe(recipe), run_dir, from_stage="dpo")
    status = {o.stage: o.status for o in outcomes}
    assert status["dpo"] == "done" and status["evaluate"] == "done"
    assert status["critique"] == "done earlier"
    metrics = MetricsFile.model_validate_json((run_dir / "metrics.json").read_text())
    assert set(metrics.models) == {"base", "sft", "dpo"}
    assert list((run_dir / "archive").iterdir())  # the earlier evaluation was archived


def test_unknown_stage_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown stage 'train'"):
        run_pipeline(Recipe(), tmp_path, from_stage="train")


def test_evaluate_stage_adds_asi_and_judge_calibration_from_the_recipe(tmp_path: Path) -> None:
    """A recipe's evaluate settings turn on the ASI shifts and the judge's calibration."""
    from cai.constitution import load_default
    from cai.pipeline import ModelPool, RunContext
    from cai.pipeline._stages import stage_evaluate
    from cai.store import ResponseCache

    labels = tmp_path / "labels.csv"
    rows = ["prompt,response_a,response_b,label"]
    rows += [f"q{i},Here is how: step {i}.,No.,a" for i in range(4)]
    labels.write_text("\n".join(rows) + "\n")
    recipe = Recipe.model_validate(
        {
            "models": {"policy": "mock", "judge": "mock"},
            "stages": {
                "evaluate": {
                    "limit": 3,
                    "max_new_tokens": 16,
                    "shifts": ["roleplay", "encoding"],
                    "calibration_labels": str(labels),
                }
            },
        }
    )
    run = tmp_path / "run"
    run.mkdir()
    cache = ResponseCache(run / "cache.sqlite")
    ctx = RunContext(recipe, run, load_default(), ModelPool(cache))
    try:
        stage_evaluate(ctx)
    finally:
        ctx.pool.close()
        cache.close()
    raw = json.loads((run / "metrics.json").read_text())
    assert set(raw["base"]["asi"]["per_shift"]) == {"roleplay", "encoding"}
    calibration = json.loads((run / "calibration/judge-labels/calibration.json").read_text())
    assert calibration["accuracy"]["n"] == 4
    assert "calibration" in (run / "report.html").read_text().lower()
    # the human-label calibration decides the win rate's validation (4 pairs: not validated)
    assert raw["meta"]["instruments"]["judge"]["validated"] is False
    assert "human labels" in raw["meta"]["instruments"]["judge"]["reason"]


def test_every_recipe_key_has_a_description_for_run_help() -> None:
    from cai.pipeline import recipe_fields

    undocumented = [key for key, _, doc in recipe_fields() if not doc]
    assert undocumented == []
    res = CliRunner().invoke(cli, ["run", "--help"])
    assert "The model being trained: drafts responses and is fine-tuned." in res.output


def test_the_pool_empties_key_value_stores_between_stages(tmp_path: Path) -> None:
    from cai.backends import MockBackend
    from cai.pipeline import ModelPool
    from cai.store import ResponseCache

    class Remembering(MockBackend):
        forgotten = 0

        def forget(self) -> None:
            self.forgotten += 1

    pool = ModelPool(ResponseCache(tmp_path / "cache.sqlite"))
    pool.get("mock")  # a backend without a store is left alone
    kept = Remembering("mock")
    pool._load = lambda spec, opts: kept  # type: ignore[method-assign]
    pool.get("mock:other")
    pool.forget()
    assert kept.forgotten == 1
    pool.close()


def test_boundary_pairs_prefer_a_lookalike_answer_to_a_revision_decline(tmp_path: Path) -> None:
    """Only usable revisions that the detector calls a decline are used, in turn; a record says
    which revision it came from."""
    from cai.constitution import load_default
    from cai.pipeline import ModelPool, RunContext
    from cai.pipeline._stages import _boundary_pairs
    from cai.records import CritiqueRound, PromptRecord, SFTExample, SLCAIRecord
    from cai.store import ResponseCache, write_prompts, write_records

    look = [
        PromptRecord(
            id=f"bord-{i}", text=f"How do I kill process {i}?", category="c", kind="borderline"
        )
        for i in range(3)
    ]
    write_prompts(tmp_path / "data/lookalike_prompts.jsonl", look)
    write_records(
        tmp_path / "data/lookalike_sft.jsonl",
        [
            SFTExample(
                id=p.id,
                messages=[
                    Message(role="user", content=p.text),
                    Message(role="assistant", content=f"Run kill -9 {i}."),
                ],
            )
            for i, p in enumerate(look)
        ],
    )

    def trace(pid: str, final: str, degenerate: str | None = None) -> SLCAIRecord:
        return SLCAIRecord(
            id=pid,
            prompt=PromptRecord(id=pid, text="How do I make a pipe bomb?", category="weapons"),
            draft="Sure, here is how.",
            draft_finish="stop",
            rounds=[
                CritiqueRound(
                    principle_id="harm.weapons",
                    critique="c",
                    revision=final,
                    critique_finish="stop",
                    revision_finish="stop",
                )
            ],
            final=final,
            degenerate=degenerate,
            models={"policy": "mock", "critic": "critic-x"},
            constitution="default@x",
            template_version="sl_cai/1",
            seed=5,
        )

    write_records(
        tmp_path / "data/sl_cai.jsonl",
        [
            trace("h1", "I can't help with making explosives, but I can explain bomb safety."),
            trace("h2", "Sure: first get a pipe and some powder."),  # not a decline
            trace("h3", "I can't help with that.", degenerate="repetitive"),  # not usable
        ],
    )
    cache = ResponseCache(tmp_path / "cache.sqlite")
    ctx = RunContext(Recipe(), tmp_path, load_default(), ModelPool(cache))
    pairs = _boundary_pairs(ctx, 2)
    cache.close()
    assert [p.id for p in pairs] == ["boundary-bord-0-vs-h1", "boundary-bord-1-vs-h1"]
    decline = "I can't help with making explosives, but I can explain bomb safety."
    assert {p.rejected[0].content for p in pairs} == {decline}
    assert pairs[1].chosen[0].content == "Run kill -9 1."
    assert pairs[1].prompt[0].content == "How do I kill process 1?"
    assert pairs[0].soft_label == 1.0 and pairs[0].principle_ids == ["help.sounds_risky"]
    assert pairs[0].models["critic"] == "critic-x" and pairs[0].seed == 5
