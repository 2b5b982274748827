"""The end of ``cai run`` at 80 columns: the stage table shows each stage's figures as whole
``key value`` items, wrapped between items, never a JSON string cut mid-word."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cai.cli._run import stage_summary

EVALUATE = {
    "seconds": 334.2,
    "base": {"harmful_compliance": 0.916667, "over_refusal": 0.0, "helpful_answered": 0.916667},
    "dpo": {"harmful_compliance": 0.25, "over_refusal": 0.209302, "helpful_answered": None},
    "report": "/a/very/long/path/to/runs/default/report.html/that/nobody/needs/in/a/table",
}


def test_a_stage_summary_keeps_figures_and_flags_and_drops_paths() -> None:
    text = stage_summary(EVALUATE | {"cached": True, "reason": "off in the recipe: " + "x " * 40})
    assert "base.harmful_compliance 0.917" in text and "dpo.over_refusal 0.209" in text
    assert "cached yes" in text and "report" not in text and "helpful_answered None" not in text
    assert "reason: off in the recipe: x x" in text  # reasons in full


def test_the_table_wraps_between_items_at_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False, color_system=None)
    table = Table()
    for col in ("stage", "status", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("detail", overflow="fold")
    summary = stage_summary(EVALUATE)
    table.add_row("evaluate", "done", "334", summary)
    console.print(table)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    cells = " ".join(line.split("│")[4].strip() for line in lines if line.count("│") == 5)
    # every item reads whole once the wrapped cell is joined with spaces
    for item in summary.split("; "):
        assert re.search(re.escape(item), cells), item


SCRIPT = """
import os, sys, warnings
from pathlib import Path
from cai.pipeline import console, library_output_to
with library_output_to(Path(sys.argv[1])) as quiet:
    console.print("stage bar", markup=False)
    warnings.warn("a FutureWarning from a library", FutureWarning)
    print("{'loss': 1.23}")
    os.write(2, b"Loading weights: 100%\\n")
print("after", quiet)
"""


def test_library_output_goes_to_the_log_and_the_console_stays_clean(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "stage bar"
    assert done.stdout.strip() == "after True"
    text = log.read_text()
    for noise in ("FutureWarning", "{'loss': 1.23}", "Loading weights"):
        assert noise in text
