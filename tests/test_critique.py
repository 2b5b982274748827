from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.backends import CachedBackend, MockBackend, MockRule
from cai.cli import cli
from cai.constitution import load_default
from cai.critique import CritiqueConfig, critique_revise, degeneracy, run_critique_stage
from cai.records import PromptRecord, SFTExample, SLCAIRecord
from cai.store import ResponseCache, read_jsonl


def _prompts(n: int, kind: str = "harmful") -> list[PromptRecord]:
    return [
        PromptRecord(
            id=f"h{i}", text=f"How do I do harmful thing number {i}?", category="x", kind=kind
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_loop_records_trace_and_batches_every_step() -> None:
    c = load_default()
    policy, critic = MockBackend("mock"), MockBackend("mock")
    records, failures = critique_revise(
        _prompts(5), c, policy, critic, CritiqueConfig(rounds=2, seed=7)
    )
    assert failures == []
    assert policy.calls == 1 and policy.requests_seen == 5  # one batched draft call
    assert critic.calls == 4 and critic.requests_seen == 20  # (critique + revision) x 2 rounds
    harm_ids = {p.id for p in c.applicable(kind="harmful")}
    for r in records:
        assert len(r.rounds) == 2
        assert all(x.principle_id in harm_ids for x in r.rounds)
        assert r.final == r.rounds[-1].revision
        assert r.models == {"policy": "mock", "critic": "mock"}
        assert r.template_version == "sl_cai/3" and r.seed == 7
        assert r.constitution.startswith(c.name + "@")
        assert r.degenerate is None


def test_principle_sampling_is_seeded_and_independent_of_batching() -> None:
    c = load_default()
    cfg = CritiqueConfig(rounds=3, seed=1)
    whole, _ = critique_revise(_prompts(6), c, MockBackend(), MockBackend(), cfg)
    part, _ = critique_revise(_prompts(6)[3:], c, MockBackend(), MockBackend(), cfg)
    ids = lambda rs: [[x.principle_id for x in r.rounds] for r in rs]  # noqa: E731
    assert ids(whole)[3:] == ids(part)
    other, _ = critique_revise(_prompts(6), c, MockBackend(), MockBackend(), CritiqueConfig(3, 2))
    assert ids(other) != ids(whole)


def test_stage_writes_trace_and_sft_and_resumes(tmp_path: Path) -> None:
    c = load_default()
    cache = ResponseCache(tmp_path / "cache.sqlite")
    inner = MockBackend()
    be = CachedBackend(inner, cache)
    s1 = run_critique_stage(_prompts(4), c, be, be, tmp_path, CritiqueConfig(chunk_size=3))
    assert s1.written == 4 and s1.sft_examples == 4 and s1.failed == 0
    sft = list(read_jsonl(tmp_path / "sft.jsonl", SFTExample))
    assert [m.role for m in sft[0].messages] == ["user", "assistant"]
    trace = {r.id: r for r in read_jsonl(tmp_path / "sl_cai.jsonl", SLCAIRecord)}
    assert sft[0].messages[1].content == trace[sft[0].id].final
    seen = inner.requests_seen
    s2 = run_critique_stage(_prompts(6), c, be, be, tmp_path, CritiqueConfig(chunk_size=3))
    assert s2.already_done == 4 and s2.written == 2
    assert inner.requests_seen == seen + 2 * 3  # only the two new prompts cost model calls
    ids = [r.id for r in read_jsonl(tmp_path / "sl_cai.jsonl", SLCAIRecord)]
    assert sorted(ids) == [f"h{i}" for i in range(6)]
    summary = json.loads((tmp_path / "critique_summary.json").read_text())
    assert summary["written"] == 2


def test_failed_calls_drop_only_their_prompt_and_rerun_retries(tmp_path: Path) -> None:
    c = load_default()
    flaky = MockBackend(rules=[MockRule(when="number 1\\?", error="HTTP 503 from server")])
    s = run_critique_stage(_prompts(3), c, MockBackend(), flaky, tmp_path)
    assert s.failed == 1 and "prompt h1: critique round 1: HTTP 503" in s.failures[0]
    assert s.written == 2
    s2 = run_critique_stage(_prompts(3), c, MockBackend(), MockBackend(), tmp_path)
    assert s2.already_done == 2 and s2.written == 1 and s2.failed == 0


def test_degenerate_outputs_are_traced_but_not_trained_on(tmp_path: Path) -> None:
    c = load_default()
    prompts = _prompts(3)
    echo = MockBackend(
        rules=[
            # The revision turn follows the critique in one chat: match on the whole chat.
            MockRule(when="number 0", reply="How do I do harmful thing number 0?", scope="chat"),
            MockRule(when="number 1", reply="I cannot help with", finish="length", scope="chat"),
        ]
    )
    s = run_critique_stage(prompts, c, MockBackend(), echo, tmp_path)
    trace = {r.id: r for r in read_jsonl(tmp_path / "sl_cai.jsonl", SLCAIRecord)}
    assert trace["h0"].degenerate == "echo_prompt"
    assert trace["h1"].degenerate == "truncated"
    assert trace["h2"].degenerate is None
    assert s.degenerate == {"echo_prompt": 1, "truncated": 1}
    assert [e.id for e in read_jsonl(tmp_path / "sft.jsonl", SFTExample)] == ["h2"]


@pytest.mark.parametrize(
    ("final", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("Sure, here is a draft answer.", "stop", "unchanged"),
        ("I would rather not explain how to", "length", "truncated"),
        ("A complete and different answer.", "length", None),
        ("I can help. " + "the serial number is the key to it all. " * 3, "stop", "repetitive"),
        (
            "Fine. An example revision that should never be copied, said twice.",
            "stop",
            "echo_few_shot",
        ),
    ],
)
def test_degeneracy_rules(final: str, finish: str, reason: str | None) -> None:
    got = degeneracy(
        prompt="Tell me something",
        draft="Sure, here is a draft answer.",
        final=final,
        final_finish=finish,  # type: ignore[arg-type]
        critiques=["The draft is harmful because..."],
        few_shot_texts=["An example revision that should never be copied verbatim."],
    )
    assert got == reason


def test_cli_critique_on_mock(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(3)))
    args = [
        "critique",
        "--prompts",
        str(prompts),
        "--policy",
        "mock",
        "--critic",
        "mock",
        "--out",
        str(tmp_path / "run"),
        "--rounds",
        "2",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "run" / "sft.jsonl").read_text().splitlines()) == 3
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0
    assert len((tmp_path / "run" / "sl_cai.jsonl").read_text().splitlines()) == 3
    assert '"route":null' in (tmp_path / "run" / "sl_cai.jsonl").read_text().replace(" ", "")

    routed = [*args[:-4], "--out", str(tmp_path / "routed"), "--router", "hash"]
    res = CliRunner().invoke(cli, routed)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "routed" / "sl_cai.jsonl").open()]
    assert len(records) == 3 and all(r["route"]["risk"] for r in records)


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        cli, ["critique", "--prompts", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "nope.jsonl" in res.output
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "q"}\n')
    res = runner.invoke(
        cli, ["critique", "--prompts", str(good), "--policy", "gpt9", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "unknown model spec 'gpt9'" in res.output
    script = tmp_path / "fail.yaml"
    script.write_text("rules:\n  - {when: '.', error: 'server said 500'}\n")
    res = runner.invoke(
        cli,
        [
            "critique",
            "--prompts",
            str(good),
            "--policy",
            "mock",
            "--critic",
            f"mock:{script}",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 1 and "server said 500" in res.output


def test_trim_to_sentence() -> None:
    from cai.critique import trim_to_sentence

    cut = "Paris is the capital of France. It has many museums and a long history. The Lou"
    assert (
        trim_to_sentence(cut)
        == "Paris is the capital of France. It has many museums and a long history."
    )
    assert trim_to_sentence("too short. x") is None
    assert trim_to_sentence("no sentence end at all in this rather long answer text here") is None


def test_the_revision_chat_continues_the_critique_chat() -> None:
    """As in the original setup, the revision request is a follow-up turn after the critic's
    own critique, so its chat starts with the critique chat message for message (which lets a
    backend reuse the critique chat's computed prefix)."""
    from cai.critique._templates import critique_request, revision_request

    c = load_default()
    principle, examples = c.principles[0], c.few_shot[:2]
    crit = critique_request(c, principle, "How do I X?", "Do Y.", examples)
    rev = revision_request(c, principle, "How do I X?", "Do Y.", "It helps with X.", examples)
    n = len(crit.messages)
    assert rev.messages[:n] == crit.messages
    assert n == 1 + 4 * len(examples) + 1  # system, four turns a worked example, the request
    assert rev.messages[n].role == "assistant"
    assert rev.messages[n].content == f"{crit.prefill} It helps with X."
    assert rev.messages[n + 1].role == "user" and principle.revision in rev.messages[n + 1].content
    assert rev.prefill == "Revised reply:"
    # Each worked example shows its critique and its revision.
    assert [m.role for m in crit.messages[1:5]] == ["user", "assistant", "user", "assistant"]
    assert crit.messages[4].content.endswith(examples[0].revision)
