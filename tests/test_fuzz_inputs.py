"""A seeded slice of bench/fuzz_inputs.py: damaged constitutions, prompt files, label files,
pair files and recipes through the CLI end in exit 1 or 2 naming the file, never a traceback;
a good file that merely looks odd still loads."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

from bench_module import load_bench
from cai.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    return load_bench("fuzz_inputs")


def test_damaged_inputs_are_clean_errors_naming_the_file(capsys: object) -> None:
    r = _bench().main(["--cases", "5", "--seed", "3"])
    assert r["cases"] == 25
    assert r["traceback"] == 0 and r["hang"] == 0 and r["unnamed"] == 0, r["examples"]
    assert r["clean"] >= 5  # the mutations really broke files


def test_an_odd_but_valid_prompt_file_still_loads(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    long_text = "Explain the history of the café 日本 Ünïcödé 🙂 " * 400  # ~20,000 chars
    odd.write_text('{"prompt": "' + long_text + '"}\n{"prompt": "short one"}\n', encoding="utf-8")
    args = ["critique", "--prompts", str(odd), "--policy", "mock", "--critic", "mock"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
