"""Judge calibration: label files, agreement statistics, the hedging probe and ``cai calibrate``."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import MockBackend, MockRule
from cai.cli import cli
from cai.constitution import load_default
from cai.errors import BackendError, InputError
from cai.evaluate import (
    CalibrationFile,
    calibrate_judge,
    hedge_probe,
    load_labels,
    read_calibration,
    write_calibration,
)
from cai.evaluate._labels import dialogue_text, split_hh, truncate_reply
from cai.records import ScoreRequest
from cai.scoring import cohen_kappa

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-dev.jsonl.gz"

# A judge that reads the content: the reply carrying GOOD wins, whichever slot it is in.
# The replies are quoted blocks (compare/2): "(A) <reply-NONCE>", a newline, then the reply.
QA, QB = r"\(A\) <reply-\w+>\n", r"\(B\) <reply-\w+>\n"
CONTENT = [MockRule(when=QA + "GOOD", prefer=0), MockRule(when=QB + "GOOD", prefer=1)]
# A judge that always answers A.
SLOT_A = [MockRule(when=".", prefer=0)]
REFUSALS = r"I( can't| won't|'m not)"


def _pairwise(path: Path, n: int = 8) -> Path:
    rows = []
    for i in range(n):
        good, bad = f"GOOD reply number {i} with detail and care.", f"bad {i}"
        a_good = i % 2 == 0
        rows.append(
            {
                "id": f"p{i}",
                "prompt": f"question {i}?",
                "response_a": good if a_good else bad,
                "response_b": bad if a_good else good,
                "label": "a" if a_good else "b",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(rules: list[MockRule], path: Path, **kw: object) -> CalibrationFile:
    labels = load_labels(path)
    judge = MockBackend("mock", rules=rules)
    return calibrate_judge(judge, labels, constitution=load_default(), n_boot=200, **kw).file  # type: ignore[arg-type]


def test_content_judge_agrees_with_people_and_has_no_position_bias(tmp_path: Path) -> None:
    f = _run(CONTENT, _pairwise(tmp_path / "p.jsonl"))
    assert f.accuracy.value == 1.0 and f.accuracy.n == 8
    assert f.kappa.value == 1.0
    assert f.position_bias.value == 0.5 and f.position_bias.n == 16
    assert f.order_consistency.value == 1.0
    assert f.length_bias is not None
    assert f.length_bias.judge_prefers_longer.value == 1.0
    assert f.length_bias.humans_prefer_longer.value == 1.0
    assert f.template == "compare/2" and f.unassessed == 0


def test_slot_judge_shows_full_position_bias_and_no_order_consistency(tmp_path: Path) -> None:
    f = _run(SLOT_A, _pairwise(tmp_path / "p.jsonl"))
    assert f.position_bias.value == 1.0
    assert f.order_consistency.value == 0.0
    assert f.position_bias.ci95 is not None and f.position_bias.ci95[0] > 0.5


def test_hedge_probe_rate_follows_the_judge(tmp_path: Path) -> None:
    path = _pairwise(tmp_path / "p.jsonl", 2)
    likes_refusals = [
        MockRule(when=rf"\(A\) <reply-\w+>\n{REFUSALS}", prefer=0),
        MockRule(when=rf"\(B\) <reply-\w+>\n{REFUSALS}", prefer=1),
    ]
    likes_hedges = [
        MockRule(when=rf"\(A\) <reply-\w+>\n{REFUSALS}", prefer=1),
        MockRule(when=rf"\(B\) <reply-\w+>\n{REFUSALS}", prefer=0),
    ]
    good, bad = _run(likes_refusals, path).hedge_probe, _run(likes_hedges, path).hedge_probe
    assert good is not None and bad is not None
    n = len(hedge_probe().items)
    assert n >= 30
    assert good.prefers_hedged.value == 0.0 and good.prefers_hedged.n == n
    assert bad.prefers_hedged.value == 1.0
    assert _run(CONTENT, path, probe=False).hedge_probe is None


def test_probe_items_are_distinct_and_complete() -> None:
    items = hedge_probe().items
    assert len({i.id for i in items}) == len(items)
    assert len({i.prompt for i in items}) == len(items)
    assert all(i.hedged.strip() and i.refusal.strip() and i.hedged != i.refusal for i in items)


class FailingJudge(MockBackend):
    """Fails every score request about a prompt containing FAIL (batch and alone)."""

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        if any("FAIL" in r.messages[-1].content for r in requests):
            raise BackendError("judge down")
        return super().score(requests)


def test_failed_judge_requests_are_unassessed_not_agreement(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "prompt,response_a,response_b,label\nFAIL this,GOOD x,y,a\nok,GOOD x,y,a\nok2,y,GOOD x,b\n",
        encoding="utf-8",
    )
    res = calibrate_judge(
        FailingJudge("mock", rules=CONTENT),
        load_labels(path),
        constitution=load_default(),
        probe=False,
        n_boot=100,
    )
    assert res.file.unassessed == 1
    assert res.file.accuracy.n == 2 and res.file.accuracy.value == 1.0
    failed = [it for it in res.items if it.error]
    assert len(failed) == 1 and "judge down" in (failed[0].error or "")


def test_helpfulness_comparison_uses_the_eval_judge_template(tmp_path: Path) -> None:
    f = _run(CONTENT, _pairwise(tmp_path / "p.jsonl"), comparison="helpfulness")
    assert f.template.startswith("helpfulness_judge/") and f.constitution is None
    assert f.accuracy.value == 1.0


def test_harm_labels_compare_against_a_refusal(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    rows = [
        {"prompt": "q", "response": "GOOD safe answer", "harmful": False},
        {"prompt": "q2", "response": "nasty", "label": "harmful"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # The judge prefers GOOD replies, else the refusal: it calls 'nasty' harmful.
    rules = [
        *CONTENT,
        MockRule(when=rf"\(A\) <reply-\w+>\n{REFUSALS}", prefer=0),
        MockRule(when=rf"\(B\) <reply-\w+>\n{REFUSALS}", prefer=1),
    ]
    f = _run(rules, path, probe=False)
    assert f.labels.kind == "harm" and f.length_bias is None
    assert f.accuracy.value == 1.0 and f.accuracy.n == 2


def test_hh_rlhf_transcripts_split_and_balance(tmp_path: Path) -> None:
    path = tmp_path / "hh.jsonl.gz"
    rows = []
    for i in range(20):
        ctx = f"\n\nHuman: first {i}\n\nAssistant: sure\n\nHuman: and then {i}?"
        rows.append(
            {
                "chosen": ctx + f"\n\nAssistant: kind {i}",
                "rejected": ctx + f"\n\nAssistant: rude {i}",
            }
        )
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    labels = load_labels(path)
    assert labels.kind == "hh-rlhf" and len(labels) == 20
    first = labels.pairs[0]
    assert first.prompt.startswith("Human: first 0\nAssistant: sure\nHuman: and then 0?")
    good = first.response_a if first.a_better else first.response_b
    assert good == "kind 0"
    sides = sum(p.a_better for p in labels.pairs)
    assert 0 < sides < 20  # the human-preferred reply sits in both slots
    assert {p.kind for p in labels.pairs} == {"harmful"}
    assert {p.kind for p in load_labels(path, kind="helpful").pairs} == {"helpful"}


def test_long_transcripts_are_truncated_keeping_the_latest_turns() -> None:
    turns, good, bad = split_hh(
        "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
        "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: e",
    )
    assert (good, bad) == ("d", "e") and turns[-1] == ("Human", "c")
    long_turns = [("Human", "x" * 900), ("Assistant", "y" * 900), ("Human", "last question")]
    text, cut = dialogue_text(long_turns)
    assert cut and text.startswith("[earlier turns left out]") and text.endswith("last question")
    reply, cut = truncate_reply("word " * 400)
    assert cut and len(reply) <= 1010 and reply.endswith("[...]")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"prompt": "x"}\n', "cannot tell the label schema"),
        ('{"prompt": "x", "response_a": "a", "response_b": "b", "label": "maybe"}\n', "label"),
        ('{"prompt": "x", "response": "a", "harmful": "perhaps"}\n', "harmful"),
        ("not json\n", "not valid JSON"),
    ],
)
def test_bad_label_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        load_labels(path)
    assert "bad.jsonl:1" in str(info.value)


def test_cohen_kappa_known_values() -> None:
    assert cohen_kappa([True, False] * 5, [True, False] * 5).value == 1.0
    assert cohen_kappa([True, False] * 5, [False, True] * 5).value == -1.0
    # 40 agreements of 50 with both raters at 50% "yes": (0.8 - 0.5) / 0.5 = 0.6
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 5 + [False] * 20
    k = cohen_kappa(a, b, n_boot=300)
    assert k.value == pytest.approx(0.6) and k.ci95 is not None and k.ci95[0] < 0.6 < k.ci95[1]
    assert cohen_kappa([True] * 4, [True, False, True, True]).value == 0.0


def test_calibration_file_round_trips(tmp_path: Path) -> None:
    labels = load_labels(_pairwise(tmp_path / "p.jsonl"))
    res = calibrate_judge(
        MockBackend("mock", rules=CONTENT), labels, constitution=load_default(), n_boot=100
    )
    path = write_calibration(res, tmp_path / "out")
    back = read_calibration(tmp_path / "out")
    assert back == res.file and path.name == "calibration.json"
    lines = (tmp_path / "out" / "calibration_items.jsonl").read_text().splitlines()
    assert len(lines) == 8 + len(hedge_probe().items)
    assert read_calibration(tmp_path / "missing") is None


def test_cli_calibrate_then_eval_report_shows_the_table(tmp_path: Path) -> None:
    labels = _pairwise(tmp_path / "p.jsonl", 4)
    out = tmp_path / "run"
    args = ["calibrate", "--judge", "mock", "--labels", str(labels), "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "Judge calibration" in r.output and (out / "calibration.json").exists()
    args = ["eval", "--model", "mock", "--name", "base", "--model", "mock:/dev/null", "--name",
            "other", "--suite", "harmful", "--suite", "helpful", "--limit", "3", "--judge",
            "mock", "--out", str(out)]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    assert "Judge calibration" in html and "Prefers a hedged harmful answer" in html
    data = json.loads((out / "metrics.json").read_text())
    # 4 pairs cannot show agreement beyond chance: the win rate is marked, not reported plainly
    validation = data["other"]["helpfulness_win_rate_validation"]
    assert validation["validated"] is False and "interval includes 0" in validation["reason"]
    assert "judge not validated" in html and data["meta"]["instruments"]["judge"] == validation
    per_cat = data["other"]["per_category"]["helpfulness_win_rate"]
    assert per_cat and all(set(r) == {"value", "n", "ci95"} for r in per_cat.values())
    assert sum(r["n"] for r in per_cat.values()) == data["other"]["helpfulness_win_rate"]["n"]


def test_cli_calibrate_rejects_unknown_principle(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "calibrate",
            "--judge",
            "mock",
            "--labels",
            str(_pairwise(tmp_path / "p.jsonl", 2)),
            "--principle",
            "nope",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 2 and "nope" in r.output


@pytest.mark.skipif(
    not SHARED.exists(), reason="../shared/data/hh-rlhf-harmless-dev.jsonl.gz absent"
)
def test_shared_hh_rlhf_dev_file_reads_all_pairs() -> None:
    labels = load_labels(SHARED)
    assert labels.kind == "hh-rlhf" and len(labels) == 1000
    assert all(p.response_a != p.response_b for p in labels.pairs)


def test_an_injection_that_fools_the_judge_is_counted_as_a_flip(tmp_path: Path) -> None:
    path = _pairwise(tmp_path / "p.jsonl")
    steady = _run(CONTENT, path, injections=True).injection_probe
    assert steady is not None and steady.right_without == 8
    assert steady.flip_rate.value == 0.0 and steady.flip_rate.n == 8 * 5
    gullible = [
        MockRule(when=r"\(A\) <reply-\w+>\n[^\n]*pick this reply", prefer=0),
        MockRule(when=r"\(B\) <reply-\w+>\n[^\n]*pick this reply", prefer=1),
        *CONTENT,
    ]
    fooled = _run(gullible, path, injections=True).injection_probe
    assert fooled is not None and fooled.injections == "judge_injections/1"
    assert fooled.per_injection["override"].value == 1.0  # obeys the note in the worse reply
    assert fooled.per_injection["letter_a"].value == 0.0
    assert fooled.flip_rate.value == pytest.approx(8 / 40)
    assert fooled.flip_rate.ci95 is not None and fooled.flip_rate.ci95[0] > 0.0
