"""Stakeholder panels: per-group judgements, aggregation (mean / min / Borda), disagreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai.backends import MockBackend, MockRule
from cai.constitution import load_constitution_text
from cai.errors import InputError
from cai.feedback._panels import aggregate, disagreement, panel_judge, run_panel_stage
from cai.records import PairRecord, PreferenceRecord, PromptRecord
from cai.store import read_jsonl

TWO_GROUPS = """
version: 1
name: panel
priority: [safety, helpfulness]
stakeholders:
  - {id: public, weight: 3.0, description: everyone else}
  - {id: users, weight: 1.0, description: the person asking}
layers: [{id: base}]
principles:
  - {id: s.safe, tier: safety, layer: base, stakeholder: public, critique: c, revision: r,
     compare: Which of the two responses is SAFER for the public?}
  - {id: h.helpful, tier: helpfulness, layer: base, stakeholder: users, critique: c, revision: r,
     compare: Which of the two responses is MORE HELPFUL to the user?}
"""
REFUSAL = "I refuse to help with that."
COMPLY = "Sure, here is how to do it."

# The refusal wins the public's question and the compliance wins the users', in both orders.
RULES = [
    MockRule(when=r"\(A\) <reply-\w+>\nI refuse[\s\S]*SAFER", prefer=0),
    MockRule(when=r"\(B\) <reply-\w+>\nI refuse[\s\S]*SAFER", prefer=1),
    MockRule(when=r"\(A\) <reply-\w+>\nSure[\s\S]*MORE HELPFUL", prefer=0),
    MockRule(when=r"\(B\) <reply-\w+>\nSure[\s\S]*MORE HELPFUL", prefer=1),
]


def _pairs(n: int) -> list[PairRecord]:
    out = []
    for i in range(n):
        a, b = (REFUSAL, COMPLY) if i % 2 == 0 else (COMPLY, REFUSAL)
        prompt = PromptRecord(id=f"p{i}", text=f"Question {i}?", category="x", kind="borderline")
        out.append(
            PairRecord(
                id=f"p{i}",
                prompt=prompt,
                response_a=a,
                response_b=b,
                models={"policy": "p"},
                seeds=[0, 1],
            )
        )
    return out


def test_aggregations() -> None:
    w = {"a": 3.0, "b": 1.0}
    assert aggregate({"a": 0.9, "b": 0.2}, w, "mean") == pytest.approx((2.7 + 0.2) / 4)
    assert aggregate({"a": 0.9, "b": 0.2}, w, "borda") == pytest.approx(0.75)
    assert aggregate({"a": 0.5, "b": 0.2}, w, "borda") == pytest.approx(1.5 / 4)
    # min: A's worst group gives 0.2, B's worst gives 0.1 -> A, although only narrowly
    assert aggregate({"a": 0.9, "b": 0.2}, w, "min") == pytest.approx(0.2 / 0.3)
    assert aggregate({"a": 0.9, "b": 0.8}, w, "min") == pytest.approx(0.8 / 0.9)
    with pytest.raises(InputError, match="unknown aggregation"):
        aggregate({"a": 0.5}, w, "vote")


@pytest.mark.parametrize(("method", "refusal_wins"), [("mean", True), ("borda", True)])
def test_panel_groups_disagree_and_weights_decide(method: str, refusal_wins: bool) -> None:
    c = load_constitution_text(TWO_GROUPS)
    judgements, summary, prefs = panel_judge(
        _pairs(4), c, [MockBackend("mock", rules=RULES)], method=method
    )
    assert summary.judged == 4 and summary.groups == {"public": 3.0, "users": 1.0}
    for j in judgements:
        assert j.principles == {"public": ["s.safe"], "users": ["h.helpful"]}
        assert j.disagree == ["public|users"]
    d = summary.disagreement["public|users"]
    assert d.value == 1.0 and d.n == 4 and d.ci95 is not None and d.ci95[0] > 0.4
    assert summary.mean_abs_diff["public|users"] > 0.2
    assert len(prefs) == 4
    assert all((p.chosen[0].content == REFUSAL) == refusal_wins for p in prefs)
    assert all(set(p.principle_ids) == {"s.safe", "h.helpful"} for p in prefs)


def test_disagreement_counts_only_opposite_sides() -> None:
    c = load_constitution_text(TWO_GROUPS)
    js, _, _ = panel_judge(_pairs(2), c, [MockBackend("mock", rules=RULES)])
    same = [j.model_copy(update={"groups": {"public": 0.7, "users": 0.6}}) for j in js]
    assert disagreement(same)["public|users"].value == 0.0


def test_panel_stage_resumes(tmp_path: Path) -> None:
    c = load_constitution_text(TWO_GROUPS)
    fb = MockBackend("mock", rules=RULES)
    s1 = run_panel_stage(_pairs(2), c, [fb], tmp_path, method="borda")
    s2 = run_panel_stage(_pairs(4), c, [fb], tmp_path, method="borda")
    assert s1.judged == 2 and s2.judged == 2  # the second run only judges the new pairs
    prefs = list(read_jsonl(tmp_path / "preferences.jsonl", PreferenceRecord))
    assert sorted(p.id for p in prefs) == ["p0", "p1", "p2", "p3"]
    summary = json.loads((tmp_path / "panel_summary.json").read_text())
    assert summary["method"] == "borda" and "public|users" in summary["disagreement"]
