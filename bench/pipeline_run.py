"""End-to-end `cai run` on the default recipe: wall time, peak memory and the headline metrics.

Runs `cai run RECIPE --run-dir DIR` under `/usr/bin/time -v` (a fresh run directory, so nothing
is resumed or cached), then prints each stage's seconds from events.jsonl, the peak resident set
size, and base / SFT / DPO harmful compliance and over-refusal with n and 95% intervals.
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
import time
from pathlib import Path


def _rate(r: dict[str, object] | None) -> str:
    if not r or r.get("value") is None:
        return "n/a"
    lo, hi = r["ci95"]  # type: ignore[misc]
    return f"{r['value']:.3f} (n={r['n']}, 95% CI {lo:.3f}-{hi:.3f})"


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
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"cai run failed with exit code {proc.returncode}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] in ("done", "skipped"):
            secs, extra = ev["detail"].get("seconds", 0), ev["detail"].get("reason", "")
            print(f"  {ev['stage']:<9} {ev['event']:<8} {secs:7.1f} s  {extra}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name, m in metrics.items():
        if name == "meta":
            continue
        print(f"  {name:<5} harmful_compliance {_rate(m['harmful_compliance'])}")
        print(f"  {'':<5} over_refusal       {_rate(m['over_refusal'])}")
        print(f"  {'':<5} helpfulness_win    {_rate(m['helpfulness_win_rate'])}")
    fb = json.loads((run_dir / "data" / "feedback_summary.json").read_text())
    print(f"  feedback position bias (slot A wins): {_rate(fb['stats']['position_bias'])}")
    print(f"wall={wall / 60:.1f}min peak_rss={rss_kb / 1024 / 1024:.2f}GB")


if __name__ == "__main__":
    main()
