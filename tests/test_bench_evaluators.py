"""bench/evaluators.py on the mock backend: one table row and one JSON entry per set."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from bench_module import load_bench
from cai.constitution import load_comparison_demonstrations
from cai.evaluate import demonstration_pairs

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-dev.jsonl.gz"


def _bench() -> ModuleType:
    return load_bench("evaluators")


def test_demonstration_pairs_are_the_heldout_rows_with_their_principles() -> None:
    demos = {d.id: d for d in load_comparison_demonstrations()}
    held = demonstration_pairs()
    assert held.kind == "pairwise" and len(held.sha256) == 64
    assert {p.id for p in held.pairs} == {i for i, d in demos.items() if d.split == "heldout"}
    for p in held.pairs:
        d = demos[p.id]
        assert p.principle == d.principle_id and p.category == d.category
        assert p.a_better == (d.label == "a") and (p.response_a, p.response_b) == (
            d.response_a,
            d.response_b,
        )
    assert len(demonstration_pairs(split=None)) == len(demos)
    assert len(demonstration_pairs(split="train")) + len(held) == len(demos)


def test_mock_run_prints_each_set_and_writes_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = ["demos", "calibration"] + (["hh"] if HH.is_file() else [])
    out = tmp_path / "evaluators.json"
    argv = ["--feedback", "mock", "--limit", "4", "--sets", ",".join(sets), "--json", str(out)]
    figures = _bench().main([*argv, "--hh", str(HH)])
    printed = capsys.readouterr().out
    table = printed.split("\n\n")[1].splitlines()
    assert table[0].split()[:3] == ["set", "pairs", "accuracy"]
    assert [row.split()[0] for row in table[1:]] == sets
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == figures and written["feedback"] == "mock"
    for name in sets:
        got = written["sets"][name]
        assert got["n"] == 4 and got["requests"] == 8 and got["unassessed"] == 0
        for key in ("accuracy", "kappa", "decided"):
            assert got[key]["n"] == 4 and got[key]["value"] is not None
            assert got[key]["ci95"][0] <= got[key]["value"] <= got[key]["ci95"][1]
        assert got["position_bias"]["n"] == 8
    assert written["sets"]["demos"]["per_category"]
