"""Crash and resume: a seeded slice of bench/crash_resume.py (SIGKILL inside a training stage,
then resume) and the pieces that make a kill harmless (torn event lines, stale staging
directories)."""

from __future__ import annotations

from pathlib import Path

from bench_module import load_bench
from cai.pipeline import EventLog
from cai.train._common import staging


def test_a_run_killed_while_training_resumes_to_the_same_records(
    tmp_path: Path, tiny_model: Path
) -> None:
    bench = load_bench("crash_resume")
    r = bench.campaign(
        kills=1,
        seed=3,
        policy=f"hf:{tiny_model}",
        work=tmp_path,
        references=1,
        aim=["sft"],
        until="sft",
        quiet=True,
    )
    row = r["rows"][0]
    assert row["killed"] and row["landed"] == "sft", row
    assert (r["lost"], r["duplicated"], r["corrupt"]) == (0, 0, 0), row["corrupt"]
    assert (tmp_path / "kill-00/models/sft/train_meta.json").is_file()


def test_the_checks_see_a_lost_a_doubled_and_a_torn_record(tmp_path: Path) -> None:
    bench = load_bench("crash_resume")
    ref, got = tmp_path / "ref", tmp_path / "got"
    for d in (ref, got):
        (d / "data").mkdir(parents=True)
        (d / "events.jsonl").write_text(
            '{"version":1,"time":1,"stage":"prompts","event":"start"}\n'
            '{"version":1,"time":2,"stage":"prompts","event":"done"}\n'
        )
    (ref / "data/x.jsonl").write_text('{"id":"a","v":1}\n{"id":"b","v":2}\n{"id":"c","v":3}\n')
    (got / "data/x.jsonl").write_text('{"id":"a","v":1}\n{"id":"a","v":1}\n{"id":"c","v":4}\n{"id')
    (got / "data/.x.jsonl.tmp").write_text("")
    res = bench.compare(bench.snapshot(ref), bench.snapshot(got), set())
    assert res["lost"] == 1 and res["duplicated"] == 1
    problems = "\n".join(res["corrupt"])
    assert "orphaned temporary data/.x.jsonl.tmp" in problems
    assert "data/x.jsonl: last line has no newline" in problems
    assert "id:c: content differs" in problems


def test_an_event_torn_by_a_kill_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append("prompts", "start")
    with path.open("a") as fh:
        fh.write('{"version":1,"time":1.0,"stage":"prom')  # the kill came mid-line
    log = EventLog(path)  # the resumed run opens the log again
    log.append("prompts", "start")
    log.append("prompts", "done")
    assert [e.event for e in log.events()] == ["start", "start", "done"]
    assert path.read_text().count("\n") == 3


def test_staging_removes_directories_left_by_a_killed_training(tmp_path: Path) -> None:
    out = tmp_path / "models" / "sft"
    out.parent.mkdir()
    stale = [out.parent / ".sft.abc123.tmp", out.parent / ".sft.old-999"]
    for d in stale:
        d.mkdir()
        (d / "partial.bin").write_bytes(b"x")
    with staging(out) as tmp:
        (tmp / "train_meta.json").write_text("{}")
    assert out.is_dir() and not any(d.exists() for d in stale)
    assert sorted(p.name for p in out.parent.iterdir()) == ["sft"]
