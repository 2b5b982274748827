"""End-to-end `cai run` on the default recipe: wall time, peak memory and the headline metrics.

Runs `cai run RECIPE --run-dir DIR` under `/usr/bin/time -v` (a fresh run directory, so nothing
is resumed or cached), then prints each stage's seconds from events.jsonl and its peak resident
set size (the process tree's VmRSS, sampled every 0.5 s while the stage runs), the whole run's
peak (`time -v`), and base / SFT / DPO harmful compliance and over-refusal with n and 95%
intervals. Memory is in GiB (2**30 bytes).
Targets (issue 3): <= 20 minutes wall and <= 6 GB peak RSS on 2 CPU cores.

    .venv/bin/python bench/pipeline_run.py [--recipe recipes/default.yaml] [--run-dir runs/bench]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _rate(r: dict[str, Any] | None) -> str:
    if not r or r.get("value") is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['value']:.3f} (n={r['n']}, 95% CI {lo:.3f}-{hi:.3f})"


def _current_stage(events: Path) -> str | None:
    """The stage running now: the last one started in events.jsonl (None before the first)."""
    if not events.exists():
        return None
    for line in reversed(events.read_text().splitlines()):
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if ev.get("event") == "start":
            return str(ev["stage"])
    return None


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants, in KiB (0 once it has exited)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return total
    return total + sum(_tree_rss_kib(int(c)) for c in children)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/default.yaml")
    ap.add_argument("--run-dir", default="runs/bench")
    ap.add_argument("--keep", action="store_true", help="resume an existing run directory")
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    if run_dir.exists() and not args.keep:
        shutil.rmtree(run_dir)
    cai = Path(sys.executable).with_name("cai")
    cmd = ["/usr/bin/time", "-v", str(cai), "run", args.recipe, "--run-dir", str(run_dir)]
    start = time.perf_counter()
    peaks: dict[str, int] = {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        while proc.poll() is None:
            stage = _current_stage(run_dir / "events.jsonl")
            if stage is not None:
                peaks[stage] = max(peaks.get(stage, 0), _tree_rss_kib(proc.pid))
            time.sleep(0.5)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(stderr[-3000:])
        raise SystemExit(f"cai run failed with exit code {proc.returncode}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))  # type: ignore[union-attr]
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] in ("done", "skipped"):
            secs, extra = ev["detail"].get("seconds", 0), ev["detail"].get("reason", "")
            peak = f"{peaks[ev['stage']] / 2**20:5.2f} GiB" if ev["stage"] in peaks else " " * 9
            print(f"  {ev['stage']:<9} {ev['event']:<8} {secs:7.1f} s  {peak}  {extra}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name, m in metrics.items():
        if name == "meta":
            continue
        print(f"  {name:<5} harmful_compliance {_rate(m['harmful_compliance'])}")
        print(f"  {'':<5} over_refusal       {_rate(m['over_refusal'])}")
        print(f"  {'':<5} helpfulness_win    {_rate(m['helpfulness_win_rate'])}")
    fb = json.loads((run_dir / "data" / "feedback_summary.json").read_text())
    print(f"  feedback position bias (slot A wins): {_rate(fb['stats']['position_bias'])}")
    gib, gb = rss_kb / 2**20, rss_kb * 1024 / 1e9
    print(f"wall={wall / 60:.1f}min peak_rss={gib:.2f}GiB ({gb:.2f} GB)")


if __name__ == "__main__":
    main()
