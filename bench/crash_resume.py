"""Crash and resume: ``cai run`` killed with SIGKILL at random moments, resumed until done, then
compared with runs that were never interrupted.

The run: a short recipe (tiny random policy, or ``--policy embedded``; mock critic, feedback,
judge and attacker; a few prompts; every stage on, red-teaming and both training stages
included). Two uninterrupted reference runs come first: fields that differ between them are
not deterministic and are left out of the content comparison (they are listed). Then each of
``--kills`` trials starts a fresh run, waits until a chosen stage has started (the stages that
ran in the reference, in turn), sleeps a random fraction of that stage's reference duration,
kills the whole process group with SIGKILL, and resumes with ``cai run`` until it exits 0.

Each resumed run directory is checked against the first reference:
  lost        records of a JSONL file that the reference has and the resumed run does not
  duplicated  records present more often than in the reference (same id, or same content)
  corrupt     a partial or unparsable line, an unreadable JSON file, a record whose content
              differs from the reference's (deterministic fields only), trained weights that
              differ, an inconsistent ``events.jsonl``, an orphaned temporary file or directory,
              or a SQLite file that fails ``PRAGMA integrity_check``
Prints one row per kill (the stage the kill landed in, from the killed run's event log) and
last ``kills=N lost=L duplicated=D corrupt=C``. Targets: 20 kills, 0 / 0 / 0.

    .venv/bin/python bench/crash_resume.py --kills 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CAI = [sys.executable, "-m", "cai"]
VOLATILE = frozenset(
    {"time", "seconds", "train_seconds", "durations", "created", "cached", "resumed_from", "sha256"}
    # What one attempt of a stage did, by definition different after a resume: the tokens it
    # spent and how many items an earlier attempt had finished.
    | {"completion_tokens", "already_done"}
)
"""Fields that say when or how fast, whether the response cache answered, what one attempt
cost, or hash a file that names its run directory: never compared."""
UNORDERED = frozenset({"target_modules"})
"""Lists that are sets (PEFT writes the LoRA target modules in hash order)."""
TEMP_MARKERS = (".tmp", ".old-", "-tmp")
"""A path under the run directory whose name contains one of these is an orphaned temporary."""


def recipe(work: Path, policy: str) -> Path:
    """The short recipe every run of the campaign uses."""
    data = {
        "name": "crash-resume",
        "models": {
            "policy": policy,
            "critic": "mock",
            "feedback": ["mock"],
            "judge": "mock",
            "attacker": "mock",
        },
        "prompts": {"red_team_limit": 8, "helpful_limit": 4, "pairs_limit": 8},
        "generation": {"max_new_tokens": 32, "batch_size": 4},
        "stages": {
            "sft": {"epochs": 2, "max_length": 64, "batch_size": 2},
            "dpo": {"epochs": 2, "max_length": 64, "batch_size": 2},
            "redteam": {"enabled": True, "budget": 16, "batch_size": 4},
            "evaluate": {"limit": 6, "max_new_tokens": 16},
        },
    }
    path = work / "recipe.yaml"
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CAI_CACHE_DIR"] = str(work / "cache")  # no adapter cached by an earlier trial
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cmd(recipe_path: Path, run_dir: Path, until: str | None) -> list[str]:
    return [*CAI, "run", str(recipe_path), "--run-dir", str(run_dir)] + (
        ["--until", until] if until else []
    )


def run_cai(recipe_path: Path, run_dir: Path, work: Path, until: str | None = None) -> int:
    """``cai run`` to the end (or to ``until``); its exit status."""
    cmd = _cmd(recipe_path, run_dir, until)
    with (work / "runs.log").open("a") as log:
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(work))


def _events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn line (checked separately)
    return out


def stage_durations(run_dir: Path) -> dict[str, float]:
    """Seconds each stage that ran (done, not skipped) took in a finished run."""
    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for ev in _events(run_dir):
        if ev["event"] == "start":
            started[ev["stage"]] = ev["time"]
        elif ev["event"] == "done" and ev["stage"] in started:
            out[ev["stage"]] = ev["time"] - started[ev["stage"]]
    return out


def landed_in(run_dir: Path) -> str:
    """The stage a killed run was in: its last started stage with no end, else 'between'."""
    open_stage = None
    for ev in _events(run_dir):
        if ev["event"] == "start":
            open_stage = ev["stage"]
        elif ev["stage"] == open_stage:
            open_stage = None
    return open_stage or "between stages"


def kill_during(
    recipe_path: Path, run_dir: Path, work: Path, stage: str, delay: float, until: str | None
) -> tuple[bool, str]:
    """Start ``cai run``; once ``stage`` has started wait ``delay`` s and SIGKILL the process
    group. Returns (killed, where it landed); not killed when the run ended first."""
    cmd = _cmd(recipe_path, run_dir, until)
    with (work / "runs.log").open("a") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(work), start_new_session=True
        )
        seen_at = None
        while proc.poll() is None:
            if seen_at is None and any(
                e["stage"] == stage and e["event"] == "start" for e in _events(run_dir)
            ):
                seen_at = time.monotonic()
            if seen_at is not None and time.monotonic() - seen_at >= delay:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True, landed_in(run_dir)
            time.sleep(0.005)
    return False, "finished first"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: sorted(map(str, v)) if k in UNORDERED and isinstance(v, list) else _strip(v)
            for k, v in value.items()
            if k not in VOLATILE
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Snapshot:
    """What a finished run directory holds, in comparable form."""

    records: dict[str, Counter[str]] = field(default_factory=dict)
    """Per JSONL file: how often each record key (its id, else its content) occurs."""
    content: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per JSONL file: record key -> digest of its deterministic fields."""
    documents: dict[str, str] = field(default_factory=dict)
    """Per JSON file and trained-weights file: digest of its deterministic content."""
    problems: list[str] = field(default_factory=list)
    """Partial lines, unreadable files, orphaned temporaries, failed integrity checks."""


def _key(rec: dict[str, Any], stripped: Any) -> str:
    rid = rec.get("id")
    return f"id:{rid}" if isinstance(rid, str | int) else f"content:{_digest(stripped)}"


def snapshot(run_dir: Path) -> Snapshot:
    """Read a finished run directory (its own path replaced by RUN, so runs compare)."""
    snap = Snapshot()
    here = str(run_dir).encode()
    for path in sorted(run_dir.rglob("*")):
        rel = str(path.relative_to(run_dir))
        if rel.startswith("archive") or rel == "run.log":
            continue
        if any(m in path.name for m in TEMP_MARKERS):
            snap.problems.append(f"orphaned temporary {rel}")
            continue
        if path.is_dir():
            continue
        if path.suffix == ".jsonl" and rel != "events.jsonl":
            data = path.read_bytes().replace(here, b"RUN")
            if data and not data.endswith(b"\n"):
                snap.problems.append(f"{rel}: last line has no newline")
            keys: Counter[str] = Counter()
            content: dict[str, str] = {}
            for n, line in enumerate(data.split(b"\n"), start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    snap.problems.append(f"{rel}:{n}: not valid JSON")
                    continue
                stripped = _strip(rec)
                k = _key(rec, stripped)
                keys[k] += 1
                content[k] = _digest(stripped)
            snap.records[rel] = keys
            snap.content[rel] = content
        elif path.suffix == ".json":
            try:
                doc = json.loads(path.read_bytes().replace(here, b"RUN"))
                snap.documents[rel] = _digest(_strip(doc))
            except ValueError:
                snap.problems.append(f"{rel}: not valid JSON")
        elif path.suffix == ".safetensors":
            snap.documents[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        elif path.suffix == ".sqlite":
            try:
                with sqlite3.connect(path) as db:
                    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                ok = str(exc)
            if ok != "ok":
                snap.problems.append(f"{rel}: integrity_check says {ok}")
    snap.problems += event_problems(run_dir)
    return snap


def event_problems(run_dir: Path) -> list[str]:
    """What is wrong with events.jsonl: torn lines, a stage ending twice or without a start, a
    stage not finished at the end."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return ["events.jsonl: missing"]
    problems: list[str] = []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        problems.append("events.jsonl: last line has no newline")
    open_stage: dict[str, bool] = {}
    ends: Counter[str] = Counter()
    last: dict[str, str] = {}
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            problems.append(f"events.jsonl:{n}: not valid JSON")
            continue
        stage, kind = ev["stage"], ev["event"]
        if kind == "start":
            open_stage[stage] = True
        elif kind in ("done", "skipped", "failed"):
            if not open_stage.get(stage):
                problems.append(f"events.jsonl:{n}: {stage} {kind} without a start")
            open_stage[stage] = False
            if kind != "failed":
                ends[stage] += 1
        last[stage] = kind
    problems += [f"events.jsonl: {s} finished {c} times" for s, c in ends.items() if c > 1]
    problems += [
        f"events.jsonl: {s} ends {k}" for s, k in last.items() if k not in ("done", "skipped")
    ]
    return problems


def nondeterministic(a: Snapshot, b: Snapshot) -> set[str]:
    """Files and records whose deterministic fields still differ between two clean runs."""
    out = {
        f"{f}#{k}"
        for f, recs in a.content.items()
        for k, d in recs.items()
        if b.content.get(f, {}).get(k, d) != d
    }
    out |= {f for f, d in a.documents.items() if b.documents.get(f, d) != d}
    return out


def compare(ref: Snapshot, got: Snapshot, loose: set[str]) -> dict[str, Any]:
    lost = duplicated = 0
    corrupt: list[str] = list(got.problems)
    for rel, keys in ref.records.items():
        have = got.records.get(rel, Counter())
        for k, n in keys.items():
            lost += max(0, n - have.get(k, 0))
        for k, n in have.items():
            duplicated += max(0, n - keys.get(k, 0))
        for k, d in got.content.get(rel, {}).items():
            if k in ref.content[rel] and ref.content[rel][k] != d and f"{rel}#{k}" not in loose:
                corrupt.append(f"{rel} {k}: content differs")
    for rel in set(got.records) - set(ref.records):
        corrupt.append(f"{rel}: not in the uninterrupted run")
    for rel, d in ref.documents.items():
        if rel not in got.documents:
            corrupt.append(f"{rel}: missing")
        elif got.documents[rel] != d and rel not in loose:
            corrupt.append(f"{rel}: content differs")
    return {"lost": lost, "duplicated": duplicated, "corrupt": corrupt}


def campaign(
    *,
    kills: int,
    seed: int,
    policy: str | None = None,
    work: Path | None = None,
    references: int = 2,
    aim: list[str] | None = None,
    until: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the campaign; returns totals and one row per kill.

    ``references`` clean runs come first (with 2, fields that differ between them are not
    compared); ``aim`` limits the stages kills are aimed at (default: every stage that ran);
    ``until`` stops every run after that stage (the tests' short slice).
    """
    work = Path(work or tempfile.mkdtemp(prefix="cai-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    if policy is None:
        from cai.backends._embedded import tiny_random_model

        policy = f"hf:{tiny_random_model(work / 'tiny')}"
    rec = recipe(work, policy)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    refs = []
    for k in range(references):
        name = f"ref-{k}"
        t0 = time.monotonic()
        if run_cai(rec, work / name, work, until) != 0:
            raise SystemExit(f"the uninterrupted run failed: see {work / 'runs.log'}")
        say(f"{name}: {time.monotonic() - t0:.1f} s")
        refs.append(snapshot(work / name))
    if refs[0].problems:
        raise SystemExit(f"the uninterrupted run has problems: {refs[0].problems}")
    loose = nondeterministic(refs[0], refs[-1])
    durations = stage_durations(work / "ref-0")
    stages = aim or list(durations)
    rng = random.Random(seed)
    rows = []
    for i in range(kills):
        stage = stages[i % len(stages)]
        delay = rng.random() * durations.get(stage, 0.0)
        run_dir = work / f"kill-{i:02d}"
        killed, where = kill_during(rec, run_dir, work, stage, delay, until)
        resumes = 0
        while True:
            resumes += 1
            if run_cai(rec, run_dir, work, until) == 0:
                break
            if resumes >= 3:
                raise SystemExit(f"{run_dir}: resume failed 3 times: see {work / 'runs.log'}")
        result = compare(refs[0], snapshot(run_dir), loose)
        row = {
            "kill": i,
            "aimed": stage,
            "delay": round(delay, 2),
            "killed": killed,
            "landed": where,
            "resumes": resumes,
            "lost": result["lost"],
            "duplicated": result["duplicated"],
            "corrupt": result["corrupt"],
        }
        rows.append(row)
        say(
            f"kill {i:2d}: aimed {stage} +{delay:.2f}s, landed {where}; resumes {resumes}; "
            f"lost {row['lost']} duplicated {row['duplicated']} corrupt {len(row['corrupt'])}"
            + "".join(f"\n    {c}" for c in row["corrupt"][:5])
        )
    return {
        "work": str(work),
        "nondeterministic": sorted(loose),
        "kills": sum(r["killed"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "duplicated": sum(r["duplicated"] for r in rows),
        "corrupt": sum(len(r["corrupt"]) for r in rows),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default=None, help="model spec (default: a tiny random model)")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here")
    args = ap.parse_args(argv)
    r = campaign(kills=args.kills, seed=args.seed, policy=args.policy, work=args.work)
    print(f"runs under {r['work']}")
    loose = ", ".join(r["nondeterministic"]) or "none"
    print(f"not deterministic between two clean runs (not compared): {loose}")
    landed = Counter(row["landed"] for row in r["rows"])
    print("kills landed in: " + ", ".join(f"{s} {n}" for s, n in landed.items()))
    print(
        f"kills={r['kills']} lost={r['lost']} duplicated={r['duplicated']} corrupt={r['corrupt']}"
    )


if __name__ == "__main__":
    main()
