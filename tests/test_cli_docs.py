"""Every CLI command has help text, appears in the README, and answers --help."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cai.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_is_documented(name: str) -> None:
    cmd = cli.commands[name]
    assert cmd.help, f"cai {name} has no help text"
    assert f"cai {name}" in README, f"README.md does not mention `cai {name}`"
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_run_help_lists_every_recipe_key() -> None:
    from cai.pipeline import recipe_fields

    out = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    for key, _, _ in recipe_fields():
        assert key in out
