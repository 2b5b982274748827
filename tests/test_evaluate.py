"""cai.evaluate: metrics on scripted mock models, metrics.json, the report and ``cai eval``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import MockBackend, MockRule
from cai.cli import cli
from cai.errors import InputError
from cai.evaluate import (
    EvalResult,
    MetricsFile,
    ResponseRecord,
    Suite,
    evaluate_models,
    load_suite,
    make_suite,
    render_report,
    write_outputs,
)
from cai.records import PromptRecord, SamplingParams
from cai.scoring import RuleDetector
from cai.store import read_jsonl

REFUSE = "I'm sorry, but I can't help with that."
COMPLY = "Sure! Here is how: first, gather what you need. Then follow the steps carefully."


def _suite(kind: str, n: int, category: str = "cat") -> Suite:
    prompts = [
        PromptRecord(id=f"{kind}-{i}", text=f"{kind} request {i}?", category=f"{category}{i % 2}")
        for i in range(n)
    ]
    return make_suite(kind, kind, prompts)


SUITES = [_suite("harmful", 6), _suite("borderline", 4), _suite("helpful", 5)]


def _mock(*rules: MockRule) -> MockBackend:
    return MockBackend("mock", rules=list(rules))


def _run(models: dict[str, MockBackend], judge: MockBackend | None = None) -> EvalResult:
    return evaluate_models(
        models, SUITES, RuleDetector(), judge, SamplingParams(), baseline="base", n_boot=200
    )


def test_always_refusing_model_never_complies_and_always_over_refuses() -> None:
    refuser = _mock(MockRule(when=".", reply=REFUSE))
    base = _mock(MockRule(when=".", reply=COMPLY))
    m = _run({"base": base, "refuser": refuser}).metrics.models
    assert m["refuser"].harmful_compliance.value == 0.0
    assert m["refuser"].harmful_compliance.n == 6
    assert m["refuser"].over_refusal.value == 1.0 and m["refuser"].over_refusal.n == 9
    assert m["base"].harmful_compliance.value == 1.0 and m["base"].over_refusal.value == 0.0
    assert m["refuser"].labels == {
        "borderline": {"full_refusal": 4},
        "harmful": {"full_refusal": 6},
        "helpful": {"full_refusal": 5},
    }
    assert set(m["refuser"].per_category.harmful_compliance) == {"cat0", "cat1"}
    assert m["refuser"].per_category.over_refusal["cat0"].value == 1.0


def test_one_generate_call_per_suite_per_model() -> None:
    a, b = _mock(), _mock()
    res = _run({"base": a, "other": b})
    assert a.calls == b.calls == len(SUITES)
    assert a.requests_seen == sum(len(s.prompts) for s in SUITES)
    assert len(res.responses) == 2 * a.requests_seen


def test_errored_and_undetermined_replies_are_unassessed_not_safe() -> None:
    flaky = _mock(
        MockRule(when="harmful request [01]", error="HTTP 500"),
        MockRule(when="harmful request 2", reply=""),
        MockRule(when="harmful request 3", reply=REFUSE),
        MockRule(when=".", reply=COMPLY),
    )
    res = _run({"base": flaky})
    hc = res.metrics.models["base"].harmful_compliance
    assert hc.n == 3 and hc.value == pytest.approx(2 / 3)  # 3 refused/complied; 3 unassessed
    un = res.metrics.models["base"].unassessed["harmful_compliance"]
    assert (un.errored, un.undetermined) == (2, 1)
    failed = [r for r in res.responses if r.finish_reason == "error"]
    assert len(failed) == 2 and all(r.detection is None and r.error == "HTTP 500" for r in failed)
    assert res.metrics.models["base"].labels["harmful"]["errored"] == 2


def test_win_rate_is_null_for_baseline_and_half_for_a_position_biased_judge() -> None:
    judge = _mock(MockRule(when=".", prefer=0))
    res = _run({"base": _mock(), "other": _mock(MockRule(when=".", reply=COMPLY))}, judge)
    m = res.metrics.models
    assert m["base"].helpfulness_win_rate is None
    win = m["other"].helpfulness_win_rate
    assert win is not None and win.n == 5 and win.value == pytest.approx(0.5, abs=0.1)
    assert judge.calls == 1 and judge.requests_seen == 10  # both orders, one batch
    assert len(res.judgments) == 5 and {j.model for j in res.judgments} == {"other"}
    assert res.metrics.meta.baseline == "base" and res.metrics.meta.roles == {"judge": "mock"}


def test_win_rate_counts_failed_replies_as_unassessed_never_as_wins() -> None:
    judge = _mock(MockRule(when=".", prefer=0))
    other = _mock(MockRule(when="helpful request [012]", error="boom"))
    res = _run({"base": _mock(), "other": other}, judge)
    win = res.metrics.models["other"].helpfulness_win_rate
    assert win is not None and win.n == 2
    assert res.metrics.models["other"].unassessed["helpfulness_win_rate"].errored == 3
    assert judge.requests_seen == 4


def test_without_a_judge_win_rates_are_null_with_a_note() -> None:
    res = _run({"base": _mock(), "other": _mock()})
    assert all(m.helpfulness_win_rate is None for m in res.metrics.models.values())
    assert any("no judge was given" in n for n in res.metrics.meta.notes)
    assert res.metrics.meta.baseline is None
    html = render_report(res.metrics, res.responses)
    assert "Win rate vs baseline" in html and "not computed" in html


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="named 'meta'"):
        _run({"meta": _mock()})
    with pytest.raises(InputError, match="at least one model"):
        _run({})
    with pytest.raises(InputError, match="appears more than once"):
        p = PromptRecord(id="x", text="t", category="c")
        make_suite("s", "harmful", [p, p])
    with pytest.raises(InputError, match="kind must be one of"):
        make_suite("s", "custom", [PromptRecord(id="x", text="t", category="c")])


def test_metrics_json_has_the_design_keys_and_validates(tmp_path: Path) -> None:
    judge = _mock(MockRule(when=".", prefer=1))
    res = _run({"base": _mock(), "sft": _mock(MockRule(when=".", reply=REFUSE))}, judge)
    paths = write_outputs(res, tmp_path)
    data = json.loads(paths["metrics.json"].read_text())
    assert set(data) == {"base", "sft", "meta"}
    for name in ("base", "sft"):
        entry = data[name]
        for key in ("harmful_compliance", "over_refusal", "helpfulness_win_rate", "asi"):
            assert key in entry
        assert {"per_category", "unassessed"} <= set(entry)
        assert set(entry["harmful_compliance"]) == {"value", "n", "ci95"}
        asi = entry["asi"]
        assert (asi["value"], asi["n"], asi["ci95"]) == (None, 0, None)  # no --asi
        assert asi["per_shift"] == {} and asi["worst_family"] is None
    assert data["base"]["helpfulness_win_rate"] is None
    assert set(data["sft"]["helpfulness_win_rate"]) == {"value", "n", "ci95"}
    meta = data["meta"]
    assert meta["version"] == 1 and meta["models"] == {"base": "mock", "sft": "mock"}
    assert meta["detector"] == {"name": "rules", "version": RuleDetector().version}
    assert set(meta["suites"]) == {"harmful", "borderline", "helpful"}
    assert all(re.fullmatch("[0-9a-f]{64}", s["sha256"]) for s in meta["suites"].values())
    assert "wilson" in meta["intervals"]["harmful_compliance"].lower()
    assert "bootstrap" in meta["intervals"]["helpfulness_win_rate"]
    assert any("asi" in n and "--asi" in n for n in meta["notes"])
    assert {"generation", "seeds", "durations"} <= set(meta)
    again = MetricsFile.model_validate_json(paths["metrics.json"].read_text())
    assert again == res.metrics
    recs = list(read_jsonl(paths["responses.jsonl"], ResponseRecord))
    assert len(recs) == len(res.responses) and recs[0].id == "base/harmful/harmful-0"
    with pytest.raises(ValueError, match="Extra inputs"):
        MetricsFile.model_validate({**data, "meta": {**meta, "surprise": 1}})


def test_report_escapes_model_text_and_is_self_contained(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    models = {"base": _mock(), evil: _mock(MockRule(when=".", reply=f"Sure! {evil} Step 1."))}
    res = _run(models, _mock(MockRule(when=".", prefer=0)))
    html = write_outputs(res, tmp_path, examples_per_kind=5)["report.html"].read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert html.count("<svg") >= 3  # frontier and two category charts
    extra = render_report(res.metrics, [], [("Position <b>bias</b>", "<p id='x'>safe</p>")])
    assert "Position &lt;b&gt;bias&lt;/b&gt;" in extra and "<p id='x'>safe</p>" in extra


def test_load_suite_defaults_to_heldout_and_reads_files(tmp_path: Path) -> None:
    s = load_suite("builtin:harmful", limit=3)
    assert s.name == "harmful" and s.kind == "harmful" and len(s.prompts) == 3
    assert all(p.split == "heldout" for p in s.prompts) and s.split == "heldout"
    assert load_suite("borderline").kind == "borderline"
    assert load_suite("builtin:helpful:train", limit=2).name == "helpful:train"
    f = tmp_path / "mine.jsonl"
    f.write_text('{"prompt": "how do I x?"}\n{"prompt": "and y?"}\n')
    with pytest.raises(InputError, match="harmful="):
        load_suite(str(f))
    mine = load_suite(f"harmful={f}")
    assert mine.name == "mine" and mine.kind == "harmful" and len(mine.prompts) == 2
    assert mine.sha256() == load_suite(f"harmful={f}").sha256()


def test_cli_eval_on_mock(tmp_path: Path) -> None:
    script = tmp_path / "refuse.yaml"
    script.write_text(f'rules:\n  - {{when: ".", reply: "{REFUSE}"}}\n')
    out = tmp_path / "eval"
    args = ["eval", "--model", "mock", "--model", f"mock:{script}", "--name", "base"]
    args += ["--name", "cautious", "--judge", "mock", "--out", str(out), "--limit", "4"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out / "report.html")
    data = json.loads((out / "metrics.json").read_text())
    assert data["cautious"]["harmful_compliance"]["value"] == 0.0
    assert data["cautious"]["over_refusal"]["value"] == 1.0
    assert data["meta"]["suites"]["harmful"]["n"] == 4
    assert (out / "cache.sqlite").exists() and (out / "responses.jsonl").exists()
    bad = CliRunner().invoke(cli, [*args[:3], "--name", "a", "--name", "b", "--out", str(out)])
    assert bad.exit_code == 2 and "one --name per --model" in bad.output


def test_the_progress_total_counts_every_request_the_evaluation_reports() -> None:
    from cai.evaluate import request_count

    done = 0

    def advance(n: int, _tokens: int) -> None:
        nonlocal done
        done += n

    models = {"base": _mock(), "sft": _mock(), "dpo": _mock()}
    evaluate_models(models, SUITES, RuleDetector(), _mock(), SamplingParams(), on_progress=advance)
    assert done == request_count(list(models), SUITES, judge=True) == 15 * 3 + 2 * 5 * 2
    done = 0
    evaluate_models(models, SUITES, RuleDetector(), None, SamplingParams(), on_progress=advance)
    assert done == request_count(list(models), SUITES, judge=False) == 45
