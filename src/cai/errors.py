"""Error types shared by every layer.

Owns: the exception hierarchy and the exit code each kind of failure maps to in the CLI.
Must not know: who raises them or how they are printed.
"""

from __future__ import annotations


class CaiError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with; the message is one line."""

    exit_code = 1


class InputError(CaiError):
    """Bad input from the user: a malformed file, a missing path, an unknown model spec.

    The message names the file and line (or the option) so the user can fix it.
    """

    exit_code = 2


class BackendError(CaiError):
    """A model backend failed at run time (server error, garbage response, load failure)."""

    exit_code = 1


class MissingDependencyError(CaiError):
    """An optional dependency is not installed; the message carries the install hint."""

    exit_code = 1


def missing(package: str, extra: str) -> MissingDependencyError:
    """Build the standard install hint for a lazily imported optional dependency."""
    return MissingDependencyError(
        f"this feature needs the '{package}' package: pip install 'constitutional-ai[{extra}]'"
    )
