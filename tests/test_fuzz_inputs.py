"""A seeded slice of bench/fuzz_inputs.py: damaged constitutions, prompt files, label files,
pair files and recipes through the CLI end in exit 1 or 2 naming the file, never a traceback;
a good file that merely looks odd still loads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

from cai.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_fuzz_inputs", REPO / "bench" / "fuzz_inputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
