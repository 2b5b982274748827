"""Commands chain: what ``cai critique``, ``cai pairs`` and ``cai feedback`` write into ``--out
DIR`` is read by ``cai oversee DIR`` without renaming, as the README shows them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cai.cli import cli
from cai.store import run_file


def test_run_file_finds_a_run_layout_and_a_flat_out_dir(tmp_path: Path) -> None:
    assert run_file(tmp_path, "data/sl_cai.jsonl") == tmp_path / "data/sl_cai.jsonl"
    (tmp_path / "sl_cai.jsonl").write_text("")
    assert run_file(tmp_path, "data/sl_cai.jsonl") == tmp_path / "sl_cai.jsonl"
    (tmp_path / "data").mkdir()
    (tmp_path / "data/sl_cai.jsonl").write_text("")
    assert run_file(tmp_path, "data/sl_cai.jsonl") == tmp_path / "data/sl_cai.jsonl"


def test_critique_pairs_and_feedback_out_dirs_are_overseen(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(3)))
    out = tmp_path / "x"
    runner = CliRunner()
    for args in (
        ["critique", "--prompts", str(prompts), "--policy", "mock", "--critic", "mock"],
        ["pairs", "--prompts", str(prompts), "--policy", "mock"],
        ["feedback", "--pairs", str(out / "pairs.jsonl"), "--feedback", "mock"],
    ):
        res = runner.invoke(cli, [*args, "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert (out / "sl_cai.jsonl").exists() and not (out / "data").exists()
    n_prefs = len((out / "preferences.jsonl").read_text().splitlines())
    res = runner.invoke(cli, ["oversee", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "oversight_metrics.json").read_text())
    assert metrics["items"] == 3 + n_prefs  # every trace and every preference
    if n_prefs:
        assert (out / "preferences.reviewed.jsonl").exists()  # beside its source
