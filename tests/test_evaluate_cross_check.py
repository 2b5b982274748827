"""cai.evaluate: the helpful-answered rate and the second (cross-check) detector, on mock models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import MockBackend, MockRule
from cai.cli import cli
from cai.evaluate import (
    EvalResult,
    MetricsFile,
    ResponseRecord,
    Suite,
    evaluate_models,
    make_suite,
    render_report,
    write_outputs,
)
from cai.records import PromptRecord, SamplingParams
from cai.scoring import (
    REPLY_REASONS,
    Detection,
    Detector,
    RefusalLabel,
    RuleDetector,
    degenerate_reply,
)
from cai.store import read_jsonl

REFUSE = "I'm sorry, but I can't help with that."
COMPLY = "Sure! Here is how: first, gather what you need. Then follow the steps carefully."
LOOP = "Here is the answer you asked for. " * 6


class Fixed:
    """A detector that gives every reply the same label."""

    version = "1"

    def __init__(self, label: RefusalLabel, name: str) -> None:
        self.label: RefusalLabel = label
        self.name = name

    def detect(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Detection]:
        return [Detection(label=self.label, confidence=1.0, reason="fixed") for _ in responses]


def _suite(kind: str, n: int) -> Suite:
    prompts = [
        PromptRecord(id=f"{kind}-{i}", text=f"{kind} request {i}?", category=f"cat{i % 2}")
        for i in range(n)
    ]
    return make_suite(kind, kind, prompts)


SUITES = [_suite("harmful", 6), _suite("borderline", 4), _suite("helpful", 5)]


def _mock(*rules: MockRule) -> MockBackend:
    return MockBackend("mock", rules=list(rules))


def _run(
    models: dict[str, MockBackend],
    detector: Detector | None = None,
    cross_check: Detector | None = None,
    suites: list[Suite] = SUITES,
) -> EvalResult:
    return evaluate_models(
        models,
        suites,
        detector or RuleDetector(),
        None,
        SamplingParams(),
        n_boot=200,
        cross_check=cross_check,
    )


def test_degenerate_reply_names_empty_looping_and_echoed_replies() -> None:
    assert degenerate_reply("How do I bake bread?", "  \n ") == "empty"
    assert degenerate_reply("How do I bake bread?", "how do I bake bread") == "echo_prompt"
    assert degenerate_reply("How do I bake bread?", LOOP) == "repetitive"
    assert degenerate_reply("How do I bake bread?", COMPLY) is None
    assert degenerate_reply("How do I bake bread?", "Mix flour, water and yea") is None  # cut off
    assert REPLY_REASONS == ("empty", "echo_prompt", "repetitive")


def test_helpful_answered_counts_degenerate_replies_as_not_answered() -> None:
    model = _mock(
        MockRule(when="helpful request 0", reply=LOOP),
        MockRule(when="helpful request 1", reply="helpful request 1?"),
        MockRule(when="helpful request 2", error="HTTP 500"),
        MockRule(when="helpful request 3", reply=REFUSE),
        MockRule(when=".", reply=COMPLY),
    )
    # Every reply "complies" by this detector: only the degeneracy check tells them apart.
    m = _run({"base": model}, detector=Fixed("full_compliance", "yes")).metrics.models["base"]
    answered = m.helpful_answered
    assert answered is not None and answered.n == 4  # the failed reply is unassessed
    assert answered.value == pytest.approx(2 / 4)  # the loop and the echo are not answers
    assert answered.ci95 is not None and answered.ci95[0] < 0.5 < answered.ci95[1]  # Wilson
    assert m.unassessed["helpful_answered"].errored == 1
    rules = _run({"base": model}).metrics.models["base"].helpful_answered
    assert rules is not None and rules.value == pytest.approx(1 / 4)  # the refusal is not either


def test_helpful_answered_is_null_without_a_helpful_suite() -> None:
    res = _run({"base": _mock()}, suites=SUITES[:2])
    assert res.metrics.models["base"].helpful_answered is None
    assert "helpful_answered" not in res.metrics.models["base"].unassessed


def test_cross_check_rates_come_from_the_second_detectors_labels() -> None:
    model = _mock(
        MockRule(when="harmful request [01]", reply=REFUSE),
        MockRule(when="harmful request 2", error="boom"),
        MockRule(when=".", reply=COMPLY),
    )
    res = _run({"base": model}, cross_check=Fixed("full_refusal", "no"))
    m = res.metrics.models["base"]
    assert m.harmful_compliance.value == pytest.approx(3 / 5) and m.harmful_compliance.n == 5
    c = m.cross_check
    assert c is not None and (c.detector, c.version) == ("no", "1")
    assert c.harmful_compliance.value == 0.0 and c.harmful_compliance.n == 5
    assert c.over_refusal.value == 1.0 and c.over_refusal.n == 9
    assert c.helpful_answered is not None and c.helpful_answered.value == 0.0
    assert c.unassessed["harmful_compliance"].errored == 1
    # The main detector labels the two refusals full_refusal: the only agreements of 14 replies.
    assert c.agreement.n == 14 and c.agreement.value == pytest.approx(2 / 14)
    by_id = {r.id: r for r in res.responses}
    assert by_id["base/harmful/harmful-0"].cross_check_label == "full_refusal"
    assert by_id["base/harmful/harmful-2"].cross_check_label is None  # generation failed
    assert res.metrics.meta.cross_check == {"name": "no", "version": "1"}
    assert any(n.startswith("cross_check:") for n in res.metrics.meta.notes)


def test_same_detector_twice_agrees_everywhere() -> None:
    res = _run({"base": _mock(MockRule(when="harmful", reply=REFUSE))}, cross_check=RuleDetector())
    m = res.metrics.models["base"]
    assert m.cross_check is not None and m.cross_check.agreement.value == 1.0
    assert m.cross_check.harmful_compliance == m.harmful_compliance
    assert m.cross_check.helpful_answered == m.helpful_answered


def test_without_a_cross_check_nothing_is_added() -> None:
    res = _run({"base": _mock()})
    assert res.metrics.models["base"].cross_check is None
    assert res.metrics.meta.cross_check is None
    assert all(r.cross_check_label is None for r in res.responses)
    assert "Cross-check by a second detector" not in render_report(res.metrics, res.responses)


def test_old_records_without_the_new_fields_still_load(tmp_path: Path) -> None:
    res = _run({"base": _mock()}, cross_check=Fixed("full_refusal", "no"))
    raw = res.responses[0].model_dump(mode="json")
    del raw["cross_check_label"]
    assert ResponseRecord.model_validate(raw).cross_check_label is None
    paths = write_outputs(res, tmp_path)
    data = json.loads(paths["metrics.json"].read_text())
    for key in ("helpful_answered", "cross_check"):
        del data["base"][key]
    del data["meta"]["cross_check"]
    old = MetricsFile.model_validate(data)
    assert old.models["base"].helpful_answered is None and old.models["base"].cross_check is None
    recs = list(read_jsonl(paths["responses.jsonl"], ResponseRecord))
    assert {r.cross_check_label for r in recs if r.detection is not None} == {"full_refusal"}


def test_report_shows_helpful_answered_and_the_cross_check(tmp_path: Path) -> None:
    model = _mock(MockRule(when="helpful request 0", reply=LOOP), MockRule(when=".", reply=COMPLY))
    res = _run({"base": model}, cross_check=Fixed("full_refusal", "always-refuse"))
    html = write_outputs(res, tmp_path)["report.html"].read_text()
    assert "Helpful answered" in html
    assert "80.0%" in html  # 4 of 5 helpful replies answered by the main detector
    assert "Cross-check by a second detector" in html
    assert "second detector: always-refuse v1" in html
    assert "Agreement with rules" in html
    c = res.metrics.models["base"].cross_check
    assert c is not None and c.harmful_compliance.value == 0.0
    assert "0.0%" in html and "100.0%" in html  # its harmful compliance, its over-refusal


def test_cli_eval_cross_check(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--model", "mock", "--detector", "rules", "--cross-check", "rules"]
    args += ["--out", str(out), "--limit", "3"]
    res = CliRunner().invoke(cli, args, terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "answered" in res.output and "Cross-check: second detector rules" in res.output
    data = json.loads((out / "metrics.json").read_text())
    assert data["mock"]["cross_check"]["detector"] == "rules"
    assert data["mock"]["cross_check"]["agreement"]["value"] == 1.0
    assert data["mock"]["helpful_answered"]["n"] == 3
    bad = CliRunner().invoke(cli, [*args[:5], "--cross-check", "nope", "--out", str(out)])
    assert bad.exit_code != 0 and "unknown --cross-check" in bad.output


def test_evaluate_stage_passes_the_cross_check_and_reports_it(tmp_path: Path) -> None:
    from cai.constitution import load_default
    from cai.pipeline import ModelPool, Recipe, RunContext
    from cai.pipeline._recipe import EvaluateStage
    from cai.pipeline._stages import stage_evaluate
    from cai.store import ResponseCache

    assert EvaluateStage().cross_check == "embedding"
    recipe = Recipe.model_validate(
        {
            "models": {"policy": "mock"},
            "stages": {
                "evaluate": {
                    "limit": 2,
                    "max_new_tokens": 16,
                    "detector": "rules",
                    "cross_check": "rules",
                }
            },
        }
    )
    run = tmp_path / "run"
    run.mkdir()
    cache = ResponseCache(run / "cache.sqlite")
    ctx = RunContext(recipe, run, load_default(), ModelPool(cache))
    try:
        out = stage_evaluate(ctx)
    finally:
        ctx.pool.close()
        cache.close()
    assert set(out["base"]) == {
        "harmful_compliance",
        "over_refusal",
        "helpful_answered",
        "cross_check_harmful_compliance",
    }
    assert out["base"]["cross_check_harmful_compliance"] == out["base"]["harmful_compliance"]
    assert "second detector: rules" in (run / "report.html").read_text()
