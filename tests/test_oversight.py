"""The oversight chain: routing, escalation, the append-only verdict store, metrics against
human verdicts, overrides flowing into the reviewed preferences, and training checkpoints."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import MockBackend, MockRule
from cai.cli import cli
from cai.constitution import load_default
from cai.errors import InputError
from cai.oversight import (
    REVIEWED_PREFERENCES,
    STORE_FILE,
    CheckpointNotMet,
    OversightConfig,
    ReviewedPreference,
    VerdictStore,
    checkpoint_gap,
    load_oversight_config,
    oversee,
    oversight_metrics,
    require_checkpoint,
    spot_draw,
    training_preferences,
)
from cai.pipeline import EventLog, Recipe, RunContext
from cai.scoring import proportion
from cai.store import read_jsonl
from oversight_run import COMPLY, REFUSAL, make_run

REPO = Path(__file__).resolve().parents[1]


def _no_backend(spec: str) -> MockBackend:
    raise AssertionError(f"no model should be loaded, asked for {spec}")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def _oversee(run: Path, cfg: OversightConfig | None = None, **backends: MockBackend) -> None:
    get = backends.__getitem__ if backends else _no_backend
    oversee(run, cfg or OversightConfig(), load_default(), get)


def test_chain_escalates_disagreement_low_confidence_and_queues_spot_checks(run: Path) -> None:
    cfg = OversightConfig(escalation={"spot_check_rate": 0.0})
    _oversee(run, cfg)
    with VerdictStore(run / STORE_FILE) as store:
        routing = store.routing()
        assert len(routing) == 8 + 3 + 2
        # p0: the feedback model chose the complying reply; the rule level prefers the refusal
        assert routing["preferences:p0"].reasons == ["disagreement:L0/L1"]
        assert routing["preferences:p0"].final_label == "rejected"
        assert "low_confidence:L0" in routing["preferences:p1"].reasons  # soft label 0.55
        assert routing["sl_cai:s1"].escalated  # the final revision still complies
        assert not routing["preferences:p2"].escalated
        queued = {r.item_id for r in store.queue()}
        assert queued == {i for i, r in routing.items() if r.escalated}
        p0 = store.ai_verdicts("preferences:p0")
        assert [(v.level, v.label) for v in p0] == [("L0", "chosen"), ("L1", "rejected")]


def test_high_risk_tiers_and_spot_checks(run: Path) -> None:
    cfg = OversightConfig(
        sources={"sl_cai": "data/sl_cai.jsonl", "redteam": "data/redteam.jsonl"},
        escalation={"tiers": ["safety"], "high_risk_categories": ["cyber"], "disagreement": False},
    )
    _oversee(run, cfg)
    with VerdictStore(run / STORE_FILE) as store:
        routing = store.routing()
    assert "tier:safety" in routing["sl_cai:s0"].reasons  # harm.cyber is a safety principle
    assert "high_risk:cyber" in routing["redteam:r0"].reasons
    assert not routing["redteam:r1"].escalated  # no principle, no category, levels agree


def test_spot_check_draw_is_seeded_and_matches_the_rate() -> None:
    ids = [f"item{i}" for i in range(4000)]
    drawn = [i for i in ids if spot_draw(7, i) < 0.1]
    assert drawn == [i for i in ids if spot_draw(7, i) < 0.1]
    assert drawn != [i for i in ids if spot_draw(8, i) < 0.1]
    lo, hi = proportion(len(drawn), len(ids)).ci95 or (0, 0)
    assert lo < 0.1 < hi


def test_rerun_routes_only_new_items(run: Path) -> None:
    _oversee(run)
    summary = oversee(run, OversightConfig(), load_default(), _no_backend)
    assert summary.items == 13 and summary.routed == 0


def test_judge_and_panel_levels_with_a_scripted_mock(run: Path) -> None:
    # the judge prefers whichever reply refuses, in either slot: a consistent judge
    refuses_a = MockRule(when=r"Reply \(A\):\n<reply-\w+>\nI can't", prefer=0)
    refuses_b = MockRule(when=r"Reply \(B\):\n<reply-\w+>\nI can't", prefer=1)
    judge = MockBackend(rules=[refuses_a, refuses_b])
    coin = MockBackend()  # unscripted: pseudo-random scores
    cfg = OversightConfig(
        sources={"preferences": "data/preferences.jsonl"},
        levels=[
            {"id": "L0", "kind": "source"},
            {"id": "L2", "kind": "judge", "model": "judge"},
            {"id": "L3", "kind": "panel", "members": ["judge", "judge", "coin"]},
            {"id": "L4", "kind": "human"},
        ],
        escalation={"spot_check_rate": 0.0, "min_confidence": 0.5},
    )
    _oversee(run, cfg, judge=judge, coin=coin)
    with VerdictStore(run / STORE_FILE) as store:
        p0 = {v.level: v for v in store.ai_verdicts("preferences:p0")}
        p2 = {v.level: v for v in store.ai_verdicts("preferences:p2")}
        routing = store.routing()
    assert p0["L2"].label == "rejected" and p2["L2"].label == "chosen"  # the refusing reply
    assert p0["L2"].confidence is not None and p0["L2"].confidence > 0.5
    assert [m.member for m in p0["L3"].members] == ["judge", "judge", "coin"]
    assert p0["L3"].label == "rejected"  # two of three members
    assert "disagreement:L0/L2" in routing["preferences:p0"].reasons
    if p0["L3"].members[2].label != "rejected":
        assert "panel_disagreement:L3" in routing["preferences:p0"].reasons


def test_human_verdicts_are_append_only_and_the_latest_counts(run: Path) -> None:
    _oversee(run)
    with VerdictStore(run / STORE_FILE) as store:
        store.add_verdict("preferences:p0", "alice", "approve", "chosen")
        store.add_verdict("preferences:p0", "bob", "comment", None, "looks wrong to me")
        store.add_verdict("preferences:p0", "bob", "override", "rejected")
        assert store.current()["preferences:p0"].label == "rejected"
        assert [h.action for h in store.history("preferences:p0")] == [
            "approve",
            "comment",
            "override",
        ]
        with pytest.raises(InputError, match="label must be one of"):
            store.add_verdict("preferences:p0", "bob", "override", "maybe")
        with pytest.raises(InputError, match="approve keeps"):
            store.add_verdict("preferences:p0", "bob", "approve", "rejected")
        assert store.migrations() == ["m001_items_verdicts_reviewers", "m002_sessions"]
    db = sqlite3.connect(run / STORE_FILE)
    for sql in ("UPDATE verdicts SET label = 'chosen'", "DELETE FROM verdicts"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    assert db.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 3


def test_reviewer_tokens_are_stored_hashed(run: Path) -> None:
    with VerdictStore(run / STORE_FILE) as store:
        token = store.add_reviewer("alice")
        assert store.reviewer_for_token(token) == "alice"
        assert store.reviewer_for_token(token + "x") is None
        new = store.add_reviewer("alice")  # rotation: the old token stops working
        assert store.reviewer_for_token(token) is None and store.reviewer_for_token(new) == "alice"
    raw = (run / STORE_FILE).read_bytes()
    assert token.encode() not in raw and new.encode() not in raw


def test_override_wins_in_the_reviewed_preferences(run: Path) -> None:
    from cai.oversight import export_reviewed

    _oversee(run)
    with VerdictStore(run / STORE_FILE) as store:
        store.add_verdict("preferences:p0", "alice", "override", "rejected")
        store.add_verdict("preferences:p2", "alice", "approve", "chosen")
        export_reviewed(run, store)
    rows = {r.id: r for r in read_jsonl(run / REVIEWED_PREFERENCES, ReviewedPreference)}
    assert len(rows) == 8
    assert rows["p0"].label_source == "human" and rows["p0"].swapped
    assert rows["p0"].chosen[-1].content == REFUSAL and rows["p0"].rejected[-1].content == COMPLY
    assert rows["p2"].label_source == "human" and not rows["p2"].swapped
    assert {r.label_source for k, r in rows.items() if k not in ("p0", "p2")} == {"ai"}
    train = {r.id: r for r in training_preferences(run)}
    assert train["p0"].chosen[-1].content == REFUSAL
    assert type(train["p0"]).__name__ == "PreferenceRecord"
    # a verdict given after the last export still reaches the trainer
    with VerdictStore(run / STORE_FILE) as store:
        store.add_verdict("preferences:p3", "bob", "override", "rejected")
    assert {r.id: r for r in training_preferences(run)}["p3"].chosen[-1].content == COMPLY


def test_metrics_measure_levels_against_humans(run: Path) -> None:
    cfg = OversightConfig(escalation={"spot_check_rate": 0.5, "seed": 3})
    _oversee(run, cfg)
    with VerdictStore(run / STORE_FILE) as store:
        routing = store.routing()
        spots = [i for i, r in routing.items() if r.spot_check]
        assert spots, "seed 3 draws some spot checks"
        # humans side with the rule level on p0, and find one spot check wrong
        store.add_verdict("preferences:p0", "alice", "override", "rejected")
        wrong = spots[0]
        item = store.item(wrong)
        assert item is not None
        other = next(c for c in item.choices if c != routing[wrong].final_label)
        action = "approve" if other == item.ai_label else "override"
        store.add_verdict(wrong, "alice", action, other)
        for sid in spots[1:]:
            lab = routing[sid].final_label
            it = store.item(sid)
            assert it is not None
            store.add_verdict(sid, "bob", "approve" if lab == it.ai_label else "override", lab)
        m = oversight_metrics(store, cfg)
    assert m.reviewed == len(spots) + 1
    assert m.unseen_error_rate == proportion(1, len(spots))
    unseen = sum(1 for r in routing.values() if not r.escalated) - len(spots)
    assert m.unseen_items == unseen
    l1 = next(lv for lv in m.levels if lv.level == "L1")
    assert l1.accuracy.n + l1.abstained == m.reviewed
    escalated = sum(r.escalated for r in routing.values())
    assert m.escalation_rate == proportion(escalated, len(routing))


def test_checkpoint_blocks_training_until_enough_reviews(run: Path) -> None:
    cfg = OversightConfig(
        checkpoints=[{"before": "dpo", "sources": ["preferences"], "per_1000": 250}]
    )
    with pytest.raises(CheckpointNotMet, match="no human review yet; run `cai oversee"):
        require_checkpoint(run, cfg, "dpo")
    _oversee(run, cfg)
    gap = checkpoint_gap(run, cfg, "dpo")
    assert gap is not None and "0 of 2 required human reviews of preferences" in gap
    assert checkpoint_gap(run, cfg, "sft") is None  # no checkpoint before sft
    with VerdictStore(run / STORE_FILE) as store:
        store.add_verdict("preferences:p0", "alice", "override", "rejected")
        store.add_verdict("preferences:p0", "alice", "approve", "chosen")  # same item twice
        assert checkpoint_gap(run, cfg, "dpo") is not None
        store.add_verdict("preferences:p3", "alice", "approve", "chosen")
    assert checkpoint_gap(run, cfg, "dpo") is None


def test_pipeline_refuses_to_start_a_stage_behind_an_unmet_checkpoint(
    run: Path, tmp_path: Path
) -> None:
    from cai.pipeline._run import _run_stage

    conf = tmp_path / "oversight.yaml"
    conf.write_text("checkpoints:\n  - {before: dpo, sources: [preferences], min_reviewed: 3}\n")
    ctx = RunContext(Recipe(oversight=str(conf)), run, load_default(), None)  # type: ignore[arg-type]
    log = EventLog(run / "events.jsonl")
    with pytest.raises(CheckpointNotMet, match="checkpoint before dpo"):
        _run_stage(ctx, log, "dpo")
    last = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()][-1]
    assert last["event"] == "failed" and "checkpoint before dpo" in last["detail"]["error"]


def test_config_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "o.yaml"
    bad.write_text("levels:\n  - {id: L1, kind: rules}\n  - {id: L2, kind: judge}\n")
    with pytest.raises(InputError, match=r"o\.yaml:3: .*judge level needs 'model'"):
        load_oversight_config(bad)
    bad.write_text("escalation:\n  spot_check_rate: 2\n")
    with pytest.raises(InputError, match=r"o\.yaml:2: escalation\.spot_check_rate"):
        load_oversight_config(bad)


def test_example_config_loads() -> None:
    cfg = load_oversight_config(REPO / "examples" / "oversight.yaml")
    assert [lv.kind for lv in cfg.levels][-1] == "human"
    assert {cp.before for cp in cfg.checkpoints} == {"sft", "dpo"}


def test_bad_redteam_line_names_file_and_line(run: Path) -> None:
    with (run / "data" / "redteam.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "r9", "prompt": "x", "response": "y"}) + "\n")
    with pytest.raises(InputError, match=r"redteam\.jsonl:3: a red-team result needs"):
        _oversee(run)


def test_cli_oversee_writes_store_metrics_and_reviewed_file(run: Path) -> None:
    res = CliRunner().invoke(cli, ["oversee", str(run)])
    assert res.exit_code == 0, res.output
    assert "13 items" in res.output and "escalation rate" in res.output
    metrics = json.loads((run / "oversight_metrics.json").read_text())
    assert metrics["items"] == 13 and set(metrics["escalation_rate"]) == {"value", "n", "ci95"}
    assert (run / REVIEWED_PREFERENCES).exists()
    from cai.pipeline._report import pipeline_sections

    ctx = RunContext(Recipe(), run, load_default(), None)  # type: ignore[arg-type]
    sections = dict(pipeline_sections(ctx))
    table = sections["Oversight: AI levels against human reviewers"]
    assert "escalation rate" in table and "n=13" in table
    missing = CliRunner().invoke(cli, ["oversee", str(run / "nope")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


def test_human_verdicts_on_revisions_flow_into_the_sft_data(run: Path) -> None:
    from cai.oversight import REVIEWED_SFT, training_sft
    from cai.records import Message, SFTExample
    from cai.store import write_records

    def example(i: int) -> SFTExample:
        return SFTExample(
            id=f"s{i}",
            messages=[Message(role="user", content="q"), Message(role="assistant", content="a")],
        )

    write_records(run / "data/sft.jsonl", [example(0), example(2)])  # s1 left out by the AI
    assert training_sft(run) == run / "data/sft.jsonl"  # no human review yet
    _oversee(run)
    with VerdictStore(run / STORE_FILE) as store:
        store.add_verdict("sl_cai:s0", "alice", "override", "reject")
        store.add_verdict("sl_cai:s1", "alice", "approve", "accept")
    path = training_sft(run)
    assert path == run / REVIEWED_SFT
    rows = {r.id: r for r in read_jsonl(path, SFTExample)}
    assert set(rows) == {"s1", "s2"}  # the human reject wins; the human accept adds s1
    assert rows["s2"].label_source == "ai" and rows["s1"].label_source == "human"
    assert rows["s1"].messages[-1].content == COMPLY  # s1's final revision
