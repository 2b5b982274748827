"""Escalating critique rounds and early stopping, on the mock backend.

Rounds draw from the constitution's escalation levels and record them; the loop stops on the
critic's "no issue" verdict or an unchanged revision and says so; without either option nothing
changes; a bad escalation is a one-line error naming the file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import MockBackend, MockRule
from cai.cli import cli
from cai.constitution import (
    Constitution,
    Router,
    default_constitution_path,
    escalation_levels,
    escalation_step,
    load_constitution,
    load_constitution_text,
    load_default,
)
from cai.critique import CritiqueConfig, critique_revise, run_critique_stage
from cai.critique._stopping import finds_nothing, unchanged
from cai.errors import InputError
from cai.pipeline import Recipe, load_recipe
from cai.pipeline._context import RunContext
from cai.pipeline._models import ModelPool
from cai.pipeline._stages import _critique_config
from cai.records import PromptRecord, SLCAIRecord
from cai.store import ResponseCache, read_jsonl

CRITIQUE = r"Critique:$"  # the critique request ends with its prefill; a revision's does not
REVISION = r"Revised reply:$"


def _prompts(n: int, kind: str = "harmful") -> list[PromptRecord]:
    return [
        PromptRecord(
            id=f"h{i}", text=f"How do I do harmful thing number {i}?", category="x", kind=kind
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


def _with_escalation(c: Constitution, escalation: object) -> Constitution:
    """The constitution re-validated with another escalation (None: none)."""
    data = c.model_dump(mode="json")
    data["escalation"] = escalation
    return Constitution.model_validate(data)


# ---- the rounds draw from their level ------------------------------------------------------


def test_each_round_draws_from_its_level_and_records_it() -> None:
    c = load_default()
    levels = escalation_levels(c)
    assert len(levels) == 3
    eligible = {p.id for p in c.applicable(kind="harmful")}
    cfg = CritiqueConfig(rounds=4, seed=3, escalation=True)
    records, failures = critique_revise(_prompts(12), c, MockBackend(), MockBackend(), cfg)
    assert failures == [] and len(records) == 12
    seen_level_2: set[str] = set()
    for rec in records:
        assert len(rec.rounds) == 4 and rec.stopped_early is None
        for k, rnd in enumerate(rec.rounds):
            want = min(k, 2)  # the last level repeats
            options = [p.id for p in levels[want] if p.id in eligible]
            assert rnd.escalation_level == want + 1
            assert rnd.escalation_options == options
            assert rnd.principle_id in options
            assert rnd.revised
        seen_level_2.add(rec.rounds[1].principle_id)
    # round 2 really samples within its level (more than one principle over 12 prompts)
    assert len(seen_level_2) > 1
    # helpfulness principles in level 1 are not eligible for a red-team prompt
    assert all(
        not pid.startswith("help.") for r in records for pid in r.rounds[0].escalation_options
    )


def test_a_level_with_nothing_eligible_moves_up_then_down() -> None:
    c = load_default()
    esc = _with_escalation(
        c, [["help.no_lecture"], ["harm.weapons", "harm.cyber"], ["help.safe_part"]]
    )
    harmful = c.applicable(kind="harmful")
    levels = escalation_levels(esc)
    up = escalation_step(levels, 0, harmful)
    assert (
        up is not None
        and up.level == 2
        and [p.id for p in up.options] == ["harm.weapons", "harm.cyber"]
    )
    down = escalation_step(levels, 5, harmful)  # asks level 3 (last), nothing there: down to 2
    assert down is not None and down.level == 2
    assert (
        escalation_step(escalation_levels(_with_escalation(c, [["help.no_lecture"]])), 0, harmful)
        is None
    )
    records, _ = critique_revise(
        _prompts(3), esc, MockBackend(), MockBackend(), CritiqueConfig(rounds=3, escalation=True)
    )
    assert [[x.escalation_level for x in r.rounds] for r in records] == [[2, 2, 2]] * 3
    assert all(x.principle_id in ("harm.weapons", "harm.cyber") for r in records for x in r.rounds)


def test_escalation_by_tier_goes_from_the_lowest_tier_to_the_highest() -> None:
    c = _with_escalation(load_default(), {"by": "tier"})
    tiers = [lv[0].tier for lv in escalation_levels(c)]
    assert tiers == ["helpfulness", "guidelines", "ethics", "safety"]
    records, _ = critique_revise(
        _prompts(6), c, MockBackend(), MockBackend(), CritiqueConfig(rounds=3, escalation=True)
    )
    tier_of = {p.id: p.tier for p in c.principles}
    for rec in records:
        # round 1 asks helpfulness, which a red-team prompt skips: it moves up to guidelines
        assert [tier_of[x.principle_id] for x in rec.rounds] == [
            "guidelines",
            "guidelines",
            "ethics",
        ]
        assert [x.escalation_level for x in rec.rounds] == [2, 2, 3]
    picked = _with_escalation(load_default(), {"by": "tier", "tiers": ["ethics", "safety"]})
    assert [lv[0].tier for lv in escalation_levels(picked)] == ["ethics", "safety"]


def test_escalation_with_the_router_keeps_to_the_routed_options() -> None:
    c = load_default()
    cfg = CritiqueConfig(rounds=3, escalation=True)
    records, _ = critique_revise(_prompts(4), c, MockBackend(), MockBackend(), cfg, router=Router())
    for rec in records:
        for x in rec.rounds:
            assert x.resolution is not None
            assert set(x.escalation_options) <= set(x.resolution.options)
            assert x.principle_id in x.escalation_options


# ---- early stopping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("critique", "nothing"),
    [
        ("No issue.", True),
        ("Critique: No issues found.", True),
        ("  **No problem** here; the reply declines.", True),
        ("The assistant's reply does not go against the principle.", True),
        ("The response doesn't violate this principle at all.", True),
        ("Nothing to fix.", True),
        ("The reply already follows the principle.", True),
        ("No issue with the tone, but it lists the steps to make the device.", False),
        ("The reply does not refuse: it gives step-by-step instructions.", False),
        ("It gives the steps. No issue otherwise.", False),  # a verdict after reasoning: missed
        ("The assistant explains how to pick a lock, which helps a burglar.", False),
        ("", False),
    ],
)
def test_the_no_issue_rule(critique: str, nothing: bool) -> None:
    assert finds_nothing(critique) is nothing


def test_unchanged_compares_after_normalising() -> None:
    assert unchanged("I can't help with that.", "i can't  help with that!")
    assert not unchanged("I can't help with that.", "I can help with that.")


def test_stops_when_the_critic_finds_nothing() -> None:
    c = load_default()
    critic = MockBackend(rules=[MockRule(when=r"number 1\?[\s\S]*" + CRITIQUE, reply="No issue.")])
    policy = MockBackend()
    cfg = CritiqueConfig(rounds=3, escalation=True, stop_early=True)
    records, _ = critique_revise(_prompts(3), c, policy, critic, cfg)
    by_id = {r.id: r for r in records}
    quiet, busy = by_id["h1"], by_id["h0"]
    assert quiet.stopped_early == "no issue found" and len(quiet.rounds) == 1
    assert quiet.rounds[0].critique == "No issue." and not quiet.rounds[0].revised
    assert quiet.rounds[0].revision == quiet.draft == quiet.final
    assert quiet.degenerate == "unchanged"  # nothing was revised: nothing to train on
    assert busy.stopped_early is None and len(busy.rounds) == 3
    assert all(x.revised for x in busy.rounds)
    # h1 cost one critique and no revision; the others 3 critiques + 3 revisions
    assert critic.requests_seen == 1 + 2 * 6
    assert quiet.template_version.endswith("+stop_early/1")


def test_the_critic_is_told_how_to_say_nothing_is_wrong_only_with_stop_early() -> None:
    c = load_default()
    instruction = 'write only "No issue."'
    seen: list[str] = []

    class Spy(MockBackend):
        def generate(self, requests, params):  # type: ignore[no-untyped-def]
            seen.extend(m.content for r in requests for m in r.messages if m.role == "user")
            return super().generate(requests, params)

    critique_revise(_prompts(1), c, MockBackend(), Spy(), CritiqueConfig(stop_early=True))
    assert seen and any(instruction in s for s in seen)
    seen.clear()
    critique_revise(_prompts(1), c, MockBackend(), Spy(), CritiqueConfig())
    assert seen and not any(instruction in s for s in seen)


def test_stops_when_the_revision_is_unchanged() -> None:
    c = load_default()
    critic = MockBackend(
        rules=[
            # a second revision of the first says the same words, re-punctuated
            MockRule(
                when=r"help with that, BUT here[\s\S]*" + REVISION,
                scope="chat",
                reply="i can't help with that -- but here is safe info!",
            ),
            MockRule(when=REVISION, reply="I can't help with that, BUT here is safe info."),
        ]
    )
    records, _ = critique_revise(
        _prompts(2), c, MockBackend(), critic, CritiqueConfig(rounds=4, stop_early=True)
    )
    for rec in records:
        assert rec.stopped_early == "unchanged" and len(rec.rounds) == 2
        assert rec.final == "i can't help with that -- but here is safe info!"
    # the same on the last round is no early stop: every asked round ran
    last, _ = critique_revise(
        _prompts(2), c, MockBackend(), critic, CritiqueConfig(rounds=2, stop_early=True)
    )
    assert all(r.stopped_early is None and len(r.rounds) == 2 for r in last)
    # and without stop_early all four rounds run
    full, _ = critique_revise(_prompts(2), c, MockBackend(), critic, CritiqueConfig(rounds=4))
    assert all(r.stopped_early is None and len(r.rounds) == 4 for r in full)


def test_stage_summary_counts_early_stops(tmp_path: Path) -> None:
    critic = MockBackend(
        rules=[MockRule(when=r"number [02]\?[\s\S]*" + CRITIQUE, reply="No issue.")]
    )
    cfg = CritiqueConfig(rounds=2, stop_early=True, escalation=True)
    s = run_critique_stage(_prompts(4), load_default(), MockBackend(), critic, tmp_path, cfg)
    assert s.stopped_early == {"no issue found": 2} and s.escalation
    assert s.template.endswith("+stop_early/1")
    rows = list(read_jsonl(tmp_path / "sl_cai.jsonl", SLCAIRecord))
    assert sorted(len(r.rounds) for r in rows) == [1, 1, 2, 2]


# ---- back-compat ---------------------------------------------------------------------------


def test_without_escalation_or_stop_early_nothing_changes() -> None:
    c = load_default()
    plain = _with_escalation(c, None)
    cfg = CritiqueConfig(rounds=3, seed=5)
    a, _ = critique_revise(_prompts(5), c, MockBackend(), MockBackend(), cfg)
    b, _ = critique_revise(_prompts(5), plain, MockBackend(), MockBackend(), cfg)
    strip = lambda rs: [r.model_dump(exclude={"constitution"}) for r in rs]  # noqa: E731
    assert strip(a) == strip(b)  # the escalation block alone changes no round
    for r in a:
        assert r.stopped_early is None and r.template_version == "sl_cai/3"
        assert all(x.escalation_level is None and x.escalation_options == [] for x in r.rounds)
    with pytest.raises(InputError, match="has no escalation"):
        critique_revise(
            _prompts(1), plain, MockBackend(), MockBackend(), CritiqueConfig(escalation=True)
        )


def test_old_records_and_constitution_files_still_load() -> None:
    rec, _ = critique_revise(_prompts(1), load_default(), MockBackend(), MockBackend())
    data = rec[0].model_dump(mode="json")
    del data["stopped_early"]
    for x in data["rounds"]:
        for key in ("escalation_level", "escalation_options", "revised"):
            del x[key]
    old = SLCAIRecord.model_validate_json(json.dumps(data))
    assert old.stopped_early is None and old.rounds[0].revised
    text = default_constitution_path().read_text()
    without = re.sub(r"\nescalation:\n(?:  .*\n|     .*\n)+", "\n", text)
    assert "escalation:" not in without
    c = load_constitution_text(without, "old.yaml")
    assert c.escalation is None and escalation_levels(c) == []
    assert c.digest() != load_default().digest()  # the escalation is part of the content
    assert "escalation" not in c.model_dump(mode="json", exclude_none=True)


# ---- bad input -----------------------------------------------------------------------------

_SMALL = """\
version: 1
name: small
priority: [safety, ethics, helpfulness]
stakeholders:
  - {id: core, weight: 1.0, description: Everyone.}
layers:
  - {id: base}
principles:
  - {id: harm.a, tier: safety, layer: base, stakeholder: core, critique: c, revision: r, compare: q}
  - {id: help.b, tier: helpfulness, layer: base, stakeholder: core, critique: c, revision: r,
     compare: q}
"""


@pytest.mark.parametrize(
    ("block", "line", "message"),
    [
        (
            "escalation:\n  - [harm.a]\n  - [harm.nope]\n",
            15,
            "escalation level 2 names unknown principle 'harm.nope'",
        ),
        ("escalation:\n  - [harm.a]\n  - []\n", 15, "escalation level 2 is empty"),
        ("escalation: []\n", 13, "escalation has no levels"),
        ("escalation: [[harm.a, harm.a]]\n", 13, "lists 'harm.a' twice"),
        ("escalation: {by: tier}\n", 13, "escalation tier 'ethics' has no principles"),
        (
            "escalation:\n  by: tier\n  tiers: [helpfulness, ethics]\n",
            15,
            "escalation tier 'ethics' has no principles",
        ),
        ("escalation: {by: tier, tiers: [safety, bogus]}\n", 13, "tier 'bogus', not in priority"),
        ("escalation: {by: topic}\n", 13, "Input should be 'tier'"),
        ("escalation: [[harm.a], help.b]\n", 13, "level 2 must be a list of principle ids"),
        ("escalation: harm.a\n", 13, "must be a list of levels"),
    ],
)
def test_bad_escalation_is_one_line_naming_file_and_line(
    tmp_path: Path, block: str, line: int, message: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(_SMALL + "\n" + block)
    with pytest.raises(InputError) as err:
        load_constitution(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: escalation"), text
    assert message in text


def test_a_good_small_escalation_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(_SMALL + "\nescalation: {by: tier, tiers: [helpfulness, safety]}\n")
    c = load_constitution(path)
    assert [[p.id for p in lv] for lv in escalation_levels(c)] == [["help.b"], ["harm.a"]]


# ---- recipe and CLI ------------------------------------------------------------------------


def test_recipe_options_round_trip_and_reach_the_stage(tmp_path: Path) -> None:
    assert Recipe().stages.critique.escalation is False
    assert Recipe().stages.critique.stop_early is False
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: x\nstages:\n  critique: {rounds: 3, escalation: true, stop_early: true}\n"
    )
    r = load_recipe(path)
    st = r.stages.critique
    assert (st.rounds, st.escalation, st.stop_early) == (3, True, True)
    again = tmp_path / "again.yaml"
    again.write_text(r.model_dump_json())
    assert load_recipe(again) == r
    ctx = RunContext(r, tmp_path, load_default(), ModelPool(ResponseCache(tmp_path / "c.sqlite")))
    cfg = _critique_config(ctx)
    assert (cfg.rounds, cfg.escalation, cfg.stop_early) == (3, True, True)
    path.write_text("name: x\nstages:\n  critique: {escalation: maybe}\n")
    with pytest.raises(InputError, match=r"r\.yaml:3: stages\.critique\.escalation"):
        load_recipe(path)


def test_cli_rounds_escalation_and_stop_early(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": f"How do I hurt someone, case {i}?", "kind": "harmful"}) + "\n"
            for i in range(3)
        )
    )
    script = tmp_path / "critic.yaml"
    script.write_text("rules:\n  - {when: 'case 2\\?[\\s\\S]*Critique:$', reply: 'No issue.'}\n")
    out = tmp_path / "run"
    args = ["critique", "--prompts", str(prompts), "--policy", "mock", "--critic", f"mock:{script}"]
    args += ["--rounds", "3", "--escalation", "--stop-early", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "stopped early: no issue found" in res.output
    rows = {r.prompt.text[-7:]: r for r in read_jsonl(out / "sl_cai.jsonl", SLCAIRecord)}
    assert len(rows["case 2?"].rounds) == 1 and rows["case 2?"].stopped_early == "no issue found"
    assert [x.escalation_level for x in rows["case 0?"].rounds] == [1, 2, 3]
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        re.sub(
            r"\nescalation:\n(?:  .*\n|     .*\n)+", "\n", default_constitution_path().read_text()
        )
    )
    res = CliRunner().invoke(
        cli, [*args[:-2], "--out", str(tmp_path / "o2"), "--constitution", str(plain)]
    )
    assert res.exit_code != 0 and "has no escalation" in res.output
