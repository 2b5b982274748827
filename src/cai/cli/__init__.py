"""The ``cai`` command: a thin shell over the public API, one module per command.

Owns: argument parsing, progress display and turning CaiError into a one-line message and an
exit code (2 for bad input, 1 for run-time failures).
Must not know: how any stage works inside.
"""

from __future__ import annotations

import sys

import click

from cai.errors import CaiError


class CaiGroup(click.Group):
    """A click group that prints CaiError as one line and exits with its code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CaiError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=CaiGroup)
@click.version_option(package_name="constitutional-ai")
def cli() -> None:
    """Constitutional AI 2.0: critique-revision data, AI feedback, training and evaluation."""


def _register() -> None:
    from cai.cli import _constitution, _critique, _eval, _feedback, _run, _train

    for mod in (_constitution, _critique, _eval, _feedback, _run, _train):
        for cmd in mod.COMMANDS:
            cli.add_command(cmd)


_register()


def main() -> None:
    """Console entry point."""
    cli(prog_name="cai")
