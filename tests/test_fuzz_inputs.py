"""A seeded slice of bench/fuzz_inputs.py: damaged constitutions, prompt files (JSONL and CSV),
label files, pair files, recipes and preference files through the CLI end in exit 1 or 2 naming
the file, never a traceback; a good file that merely looks odd still loads."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from click.testing import CliRunner

from bench_module import load_bench
from cai.cli import cli
from cai.records import SLCAIRecord
from cai.store import read_jsonl

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    return load_bench("fuzz_inputs")


def test_damaged_inputs_are_clean_errors_naming_the_file(capsys: object) -> None:
    bench = _bench()
    r = bench.main(["--cases", "5", "--seed", "3"])
    assert r["cases"] == 5 * len(bench.TARGETS) == 35
    assert r["traceback"] == 0 and r["hang"] == 0 and r["unnamed"] == 0, r["examples"]
    assert r["clean"] >= 7  # the mutations really broke files


def test_an_odd_but_valid_prompt_file_still_loads(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    long_text = "Explain the history of the café 日本 Ünïcödé 🙂 " * 400  # ~20,000 chars
    odd.write_text('{"prompt": "' + long_text + '"}\n{"prompt": "short one"}\n', encoding="utf-8")
    args = ["critique", "--prompts", str(odd), "--policy", "mock", "--critic", "mock"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output


def test_every_target_accepts_its_undamaged_seed(tmp_path: Path) -> None:
    bench = _bench()
    seeds = bench._seed_texts()
    for n, target in enumerate(bench.TARGETS):
        # the preferences seed passes validation and stops at the untrainable mock base
        assert bench.run_case(target, seeds[target], tmp_path, n) == ("accepted", ""), target


def test_an_empty_file_is_an_error_naming_it_for_every_target(tmp_path: Path) -> None:
    bench = _bench()
    for n, target in enumerate(bench.TARGETS):
        outcome, message = bench.run_case(target, b"", tmp_path, n)
        assert outcome == "clean", (target, outcome, message)
        assert f"{target}-{n}." in message, message


def test_an_odd_but_valid_csv_prompt_file_still_loads(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    rows = [
        "\ufeffid,prompt,category",  # a spreadsheet's BOM
        'a,"Line one\u2028same cell, with a comma and ""quotes""",misc',
        "b,Unquoted\u0085next-line mark and \u05e9\u05dc\u05d5\u05dd RTL 🙂,misc",
        "c," + "long " * 20_000 + ",misc",  # a 100 kB cell
    ]
    odd.write_bytes("\r\n".join(rows).encode() + b"\r\n")
    args = ["critique", "--prompts", str(odd), "--policy", "mock", "--critic", "mock"]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    records = list(read_jsonl(tmp_path / "o" / "sl_cai.jsonl", SLCAIRecord))
    assert [r.prompt.text for r in records] == [
        'Line one\u2028same cell, with a comma and "quotes"',
        "Unquoted\u0085next-line mark and \u05e9\u05dc\u05d5\u05dd RTL 🙂",
        "long " * 20_000,
    ]


def test_constitution_show_takes_an_escaped_emoji_and_names_a_lone_surrogate(
    tmp_path: Path,
) -> None:
    text = (REPO / "src/cai/constitution/packs/default.yaml").read_text(encoding="utf-8")
    head, sep, rest = text.partition("\n    title: ")
    after = rest[rest.index("\n") :]  # the first title's value replaced
    line = head.count("\n") + 2
    path = tmp_path / "c.yaml"
    path.write_text(f'{head}{sep}"smile \\ud83d\\ude42"{after}')  # an emoji as JSON writes it
    res = CliRunner().invoke(cli, ["constitution", "show", str(path)])
    assert res.exit_code == 0, res.output  # was a UnicodeEncodeError traceback
    path.write_text(f'{head}{sep}"smile \\ud83d"{after}')  # half of one: no character
    res = CliRunner().invoke(cli, ["constitution", "show", str(path)])
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {path}:{line}: invalid YAML: a lone surrogate escape"
