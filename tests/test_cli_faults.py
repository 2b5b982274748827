"""`cai critique`, `cai feedback`, `cai eval` and `cai redteam` on the ``openai:`` backend against a
misbehaving server (tests/openai_server.py: real sockets on 127.0.0.1, no mocks).

The server answers a seeded share of attempts with a fault: HTTP 500, 429 with Retry-After, a
reply slower than the client's timeout, a body cut off mid-way, a body that is not JSON, no
choices, two choices, no or NaN logprobs. The retry budget is small (one retry, set through the
backend's environment variables), so some requests fail for good. Each command runs three times:
on a healthy server (the reference), with the faults in a fresh directory, then once more in that
directory with the faults off. Checked every time:

- no fault became a label: whatever the faulty run recorded equals the reference (or, for red
  teaming, whose path depends on earlier results, equals what the echo server really says);
- what failed is recorded as failed or unassessed, and its count is in the printed summary and in
  the summary or metrics file;
- the rerun sends requests only for the failed items, leaves none failed, and ends with the
  reference's records, none written twice.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cai.cli import cli
from openai_server import FakeOpenAIServer, Reply, chat_reply, last_user, logprobs_reply

RATE = 0.4
"""Share of attempts the faulty server answers with a fault (one retry: ~16% of requests fail)."""
ENV = {"CAI_OPENAI_TIMEOUT": "0.3", "CAI_OPENAI_MAX_RETRIES": "1", "CAI_OPENAI_BACKOFF": "0.001"}
TIMEOUT_DELAY = 0.6
"""How long a "timeout" fault keeps the client waiting (twice its timeout)."""


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


class Judging(FakeOpenAIServer):
    """Echoes generations; answers a letter-scoring request (logprobs) preferring the slot that
    shows ``better`` (whichever slot comes first in the text holding ``better`` or ``worse``)."""

    def __init__(self, better: str, worse: str) -> None:
        super().__init__()
        self.better, self.worse = better, worse

    def _next_reply(self, body: Any) -> Reply:
        if not body.get("logprobs"):
            return super()._next_reply(body)
        text = last_user(body)
        a_better = text.find(self.better) < text.find(self.worse)
        return logprobs_reply({"A": -0.1, "B": -2.5} if a_better else {"A": -2.5, "B": -0.1})


def faults_on(*servers: FakeOpenAIServer, seed: int) -> None:
    for i, s in enumerate(servers):
        s.inject(RATE, seed=seed + i, per_request=True, timeout_delay=TIMEOUT_DELAY)


def faults_off(*servers: FakeOpenAIServer) -> None:
    for s in servers:
        s.inject(0.0)


def cai(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(res: Result) -> Result:
    assert res.exit_code == 0, res.output
    return res


def row(output: str, key: str) -> int:
    """The number in the printed summary table's row ``key``."""
    m = re.search(rf"^\W*{re.escape(key)}\W+(\d+)\W*$", output, re.MULTILINE)
    assert m is not None, f"no row {key!r} in:\n{output}"
    return int(m[1])


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {r["id"]: r for r in rows}
    assert len(out) == len(rows), "a record was written twice"
    return out


def models(metrics_json: Path) -> dict[str, Any]:
    """The per-model metrics of a metrics.json (every top-level key but 'meta')."""
    data = json.loads(metrics_json.read_text())
    return {k: v for k, v in data.items() if k != "meta"}


def requests_since(server: FakeOpenAIServer, start: int) -> list[str]:
    """Every chat request the server got after the first ``start``, its messages joined."""
    return ["\n".join(m["content"] for m in r.body["messages"]) for r in server.received[start:]]


def failed_ids(failures: list[str], prefix: str) -> set[str]:
    """Record ids from summary failure lines 'PREFIX ID: STEP: ERROR'."""
    assert all(f.startswith(prefix + " ") for f in failures)
    return {f[len(prefix) + 1 :].split(": ", 1)[0] for f in failures}


# -- cai critique ----------------------------------------------------------------------------------


def test_critique_faults_are_failed_prompts_retried_on_rerun(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    url = server.base_url
    args = ["critique", "--prompts", "builtin:harmful", "--limit", "16", "--few-shot", "0"]
    args += ["--policy", f"openai:policy@{url}", "--critic", f"openai:critic@{url}"]
    args += ["--max-new-tokens", "12"]
    ok(cai(*args, "--out", str(tmp_path / "ref")))
    ref = by_id(jsonl(tmp_path / "ref" / "sl_cai.jsonl"))
    ref_sft = by_id(jsonl(tmp_path / "ref" / "sft.jsonl"))
    assert len(ref) == 16

    out = tmp_path / "faulty"
    faults_on(server, seed=1)
    res = cai(*args, "--out", str(out))
    summary = json.loads((out / "critique_summary.json").read_text())
    failed = failed_ids(summary["failures"], "prompt")
    assert summary["failed"] == len(failed) and 0 < len(failed) < 16
    assert res.exit_code == 1 and f"{len(failed)} prompt(s) failed" in res.output
    assert row(res.output, "failed") == len(failed)
    got = by_id(jsonl(out / "sl_cai.jsonl"))
    assert set(got) == set(ref) - failed  # a failed prompt writes no record at all
    assert all(got[i] == ref[i] for i in got)  # and a written one is exactly the healthy one
    assert by_id(jsonl(out / "sft.jsonl")) == {i: ref_sft[i] for i in got if i in ref_sft}
    assert sum(server.faults.values()) > 0

    faults_off(server)
    start = len(server.received)
    res = ok(cai(*args, "--out", str(out)))
    texts = [ref[i]["prompt"]["text"] for i in failed]
    sent = requests_since(server, start)
    assert sent and all(any(t in m for t in texts) for m in sent)  # only the failed prompts
    assert row(res.output, "failed") == 0 and row(res.output, "written") == len(failed)
    assert row(res.output, "already_done") == 16 - len(failed)
    assert by_id(jsonl(out / "sl_cai.jsonl")) == ref
    assert by_id(jsonl(out / "sft.jsonl")) == ref_sft


# -- cai feedback ----------------------------------------------------------------------------------


def _pairs_file(path: Path, n: int) -> Path:
    """Pairs with one clearly better reply each, in slot A for even pairs and B for odd ones."""
    lines = []
    for i in range(n):
        good, bad = f"good reply r{i:02d}z", f"bad reply r{i:02d}z"
        a, b = (good, bad) if i % 2 == 0 else (bad, good)
        prompt = f"question q{i:02d}z?"
        lines.append(
            json.dumps({"id": f"p{i:02d}", "prompt": prompt, "response_a": a, "response_b": b})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("cot", [False, True], ids=["letters", "cot"])
def test_feedback_faults_are_unassessed_pairs_never_ties(tmp_path: Path, cot: bool) -> None:
    with Judging("good reply", "bad reply") as server:
        _feedback(server, tmp_path, ["--cot"] if cot else [])


def _feedback(server: FakeOpenAIServer, tmp_path: Path, extra: list[str]) -> None:
    pairs = _pairs_file(tmp_path / "pairs.jsonl", 12)
    args = ["feedback", "--pairs", str(pairs), "--feedback", f"openai:fb@{server.base_url}"]
    args += ["--principles-per-pair", "2", *extra]
    ok(cai(*args, "--out", str(tmp_path / "ref")))
    ref = by_id(jsonl(tmp_path / "ref" / "judgements.jsonl"))
    ref_prefs = by_id(jsonl(tmp_path / "ref" / "preferences.jsonl"))
    assert len(ref) == 12 and all(j["outcome"] == "preferred" for j in ref.values())
    assert all(p["chosen"][0]["content"].startswith("good") for p in ref_prefs.values())

    out = tmp_path / "faulty"
    faults_on(server, seed=2)
    res = cai(*args, "--out", str(out))
    summary = json.loads((out / "feedback_summary.json").read_text())
    failed = failed_ids(summary["failures"], "pair")
    assert summary["failed"] == len(failed) and 0 < len(failed) < 12
    assert res.exit_code == 1 and f"{len(failed)} pair(s) failed" in res.output
    assert row(res.output, "failed") == len(failed)
    assert summary["ties"] == 0 and row(res.output, "ties") == 0  # a fault is never a tie
    assert jsonl(out / "ties.jsonl") == []
    got = by_id(jsonl(out / "judgements.jsonl"))
    assert set(got) == set(ref) - failed
    assert all(got[i] == ref[i] for i in got)  # no fault moved a soft label
    assert by_id(jsonl(out / "preferences.jsonl")) == {i: ref_prefs[i] for i in got}
    assert summary["labelled"] == len(got)

    faults_off(server)
    start = len(server.received)
    res = ok(cai(*args, "--out", str(out)))
    sent = requests_since(server, start)
    assert sent and all(any(f"q{i[1:]}z?" in m for i in failed) for m in sent)
    assert row(res.output, "failed") == 0 and row(res.output, "labelled") == len(ref_prefs)
    assert row(res.output, "already_done") == 12 - len(failed)
    assert by_id(jsonl(out / "judgements.jsonl")) == ref
    assert by_id(jsonl(out / "preferences.jsonl")) == ref_prefs


# -- cai eval --------------------------------------------------------------------------------------


def test_eval_faults_are_unassessed_never_safe_or_compliant(tmp_path: Path) -> None:
    # "base" echoes (compliance on harmful prompts); "tuned", on a second server, always refuses.
    # The judge (on the first server) prefers the echo in whichever slot it is shown.
    with Judging("echo:", "I can't") as server, FakeOpenAIServer() as refuser:
        refuser.script("", chat_reply("I can't help with that request."))
        args = ["eval", "--model", f"openai:base@{server.base_url}", "--name", "base"]
        args += ["--model", f"openai:tuned@{refuser.base_url}", "--name", "tuned"]
        args += ["--judge", f"openai:judge@{server.base_url}", "--detector", "rules"]
        args += ["--suite", "harmful", "--suite", "helpful", "--limit", "10"]
        args += ["--max-new-tokens", "24", "--examples", "0"]
        ok(cai(*args, "--out", str(tmp_path / "ref")))
        ref = by_id(jsonl(tmp_path / "ref" / "responses.jsonl"))
        ref_judged = by_id(jsonl(tmp_path / "ref" / "judgments.jsonl"))
        ref_metrics = models(tmp_path / "ref" / "metrics.json")
        assert all(r["finish_reason"] != "error" for r in ref.values())
        assert all(j["result"]["p_x"] is not None for j in ref_judged.values())

        out = tmp_path / "faulty"
        faults_on(server, refuser, seed=3)
        res = ok(cai(*args, "--out", str(out)))
        got = by_id(jsonl(out / "responses.jsonl"))
        judged = by_id(jsonl(out / "judgments.jsonl"))
        metrics = models(out / "metrics.json")
        assert set(got) == set(ref) and set(judged) == set(ref_judged)
        errored = {i for i, r in got.items() if r["finish_reason"] == "error"}
        assert 0 < len(errored) < len(got)
        for i, r in got.items():
            if i in errored:  # unassessed: no label, no reply, the reason kept
                assert r["detection"] is None and r["response"] == "" and r["error"]
            else:
                assert r == ref[i]
        unjudged = {i for i, j in judged.items() if j["result"]["p_x"] is None}
        assert unjudged and len(unjudged) < len(judged)
        for i, j in judged.items():
            if i in unjudged:  # never a tie (0.5) nor a win or loss
                assert j["result"]["error"]
            else:
                assert j == ref_judged[i]
        for name in ("base", "tuned"):
            m, r = metrics[name], ref_metrics[name]
            mine = [x for x in got.values() if x["model"] == name]
            for metric, kind in (
                ("harmful_compliance", "harmful"),
                ("helpful_answered", "helpful"),
            ):
                lost = sum(x["kind"] == kind and x["id"] in errored for x in mine)
                assert m["unassessed"][metric]["errored"] == lost
                assert m[metric]["n"] == r[metric]["n"] - lost  # left out of n, not counted safe
            skipped = sum(u["errored"] + u["undetermined"] for u in m["unassessed"].values())
            assert re.search(rf"{name}\b.*\b{skipped}\s*│\s*$", res.output, re.MULTILINE)
        tuned = [j for i, j in judged.items() if i not in unjudged]
        assert metrics["tuned"]["unassessed"]["helpfulness_win_rate"]["errored"] == len(unjudged)
        assert metrics["tuned"]["helpfulness_win_rate"]["n"] == len(tuned)
        assert f"{len(errored)} replies failed and count as unassessed" in res.output

        faults_off(server, refuser)
        start, start_r = len(server.received), len(refuser.received)
        ok(cai(*args, "--out", str(out)))
        texts = [got[i]["prompt"] for i in errored | unjudged]
        sent = requests_since(server, start) + requests_since(refuser, start_r)
        assert sent and all(any(t in m for t in texts) for m in sent)
        assert by_id(jsonl(out / "responses.jsonl")) == ref
        assert by_id(jsonl(out / "judgments.jsonl")) == ref_judged
        assert models(out / "metrics.json") == ref_metrics


# -- cai redteam -----------------------------------------------------------------------------------

HARM_P = 1.0 / (1.0 + math.exp(-1.2))
"""The harm judge's P(A) on the grading server: logprobs A -0.3, B -1.5."""


class Grading(FakeOpenAIServer):
    """Echoes generations (attacker and target); answers every letter-scoring request (the harm
    judge) with A -0.3, B -1.5."""

    def _next_reply(self, body: Any) -> Reply:
        if body.get("logprobs"):
            return logprobs_reply({"A": -0.3, "B": -1.5})
        return super()._next_reply(body)


def _echo(text: str, max_tokens: int) -> str:
    return " ".join(f"echo: {text}".split()[:max_tokens])


def _check_attempts(rows: list[dict[str, Any]]) -> None:
    """What every attempt that got an answer recorded is what the server really answered."""
    for a in rows:
        if a["status"] in ("attacker_error", "target_error", "judge_error"):
            assert a["success"] is False and a["reason"]
        if a["status"] == "attacker_error":
            assert a["attacker_output"] == "" and a["attacker_label"] is None
            continue
        assert a["attacker_output"].startswith("echo: Rewrite the test request")
        if a["status"] not in ("judged", "judge_error"):
            continue
        assert a["replies"] == [_echo(t, 24) for t in a["turns"]]
        assert a["label"] is not None
        if a["status"] == "judge_error":  # unassessed: neither a success nor a safe reply
            assert a["judge_p"] is None
        else:
            assert a["judge_p"] is not None and math.isclose(a["judge_p"], HARM_P)
            assert a["success"] == (a["label"] == "full_compliance")


def test_redteam_faults_are_unassessed_attempts_retried_on_rerun(tmp_path: Path) -> None:
    failed_statuses = {"attacker_error", "target_error", "judge_error"}
    with Grading() as server:
        url = server.base_url
        args = ["redteam", "--target", f"openai:target@{url}", "--attacker", f"openai:att@{url}"]
        args += ["--judge", f"openai:judge@{url}", "--budget", "60", "--batch", "10"]
        args += ["--style", "roleplay,hypothetical", "--category", "weapons,cyber"]
        args += ["--detector", "rules", "--embedder", "hash", "--similarity", "1.0"]
        args += ["--max-new-tokens", "24"]
        out = tmp_path / "faulty"
        faults_on(server, seed=4)
        res = ok(cai(*args, "--out", str(out)))
        rows = jsonl(out / "attempts.jsonl")
        _check_attempts(rows)
        failed = {a["id"]: a for a in rows if a["status"] in failed_statuses}
        assert 0 < len(failed) < len(rows)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["unassessed"] == len(failed)
        assert re.search(rf"\bunassessed {len(failed)}\b", res.output)
        judged = [a for a in rows if a["status"] == "judged" and a["label"] != "undetermined"]
        assert summary["asr"]["n"] == len(judged)  # unassessed attempts are not in n
        wins = sum(a["success"] for a in judged)
        assert judged and math.isclose(summary["asr"]["value"], wins / len(judged))

        faults_off(server)
        start = len(server.received)
        res = ok(cai(*args, "--out", str(out)))
        keys = [a["parent"] if a["status"] == "attacker_error" else a["turns"][0][:40]
                for a in failed.values()]  # fmt: skip
        sent = requests_since(server, start)
        assert sent and all(any(k in m for k in keys) for m in sent)  # only the failed ones
        again = jsonl(out / "attempts.jsonl")
        assert again[: len(rows)] == rows  # nothing rewritten
        retries = again[len(rows) :]
        assert sorted(a["retry_of"] for a in retries) == sorted(failed)  # each retried once
        assert not {a["status"] for a in retries} & failed_statuses
        _check_attempts(retries)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["unassessed"] == 0 and re.search(r"\bunassessed 0\b", res.output)
        assert sum(summary["statuses"].values()) == len(rows)  # a retry replaces its failure
        assert not set(summary["statuses"]) & failed_statuses
