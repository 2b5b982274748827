"""Constitution files: YAML text to a validated ``Constitution``, every error as ``FILE:LINE: msg``.

Owns: mapping broken cross-references back to the line that caused them (parsing and schema
errors go through ``cai.store``'s YAML helpers), and finding the bundled packs.
Must not know: what the principles say or how they are used.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from cai.constitution._model import DEFER_REFERENCES, Constitution, reference_errors
from cai.errors import InputError
from cai.store import format_loc, line_of, parse_yaml, read_text, validate_tree

PACKS = "cai.constitution.packs"
DEFAULT_PACK = "default"


def load_constitution_text(text: str, source_name: str = "<string>") -> Constitution:
    """Parse and validate constitution YAML; errors name ``source_name`` and the line."""
    tree = parse_yaml(text, source_name)
    constitution = validate_tree(
        tree, Constitution, source_name, root="constitution", context={DEFER_REFERENCES: True}
    )
    problems = reference_errors(constitution)
    if problems:
        loc, msg = min(problems, key=lambda pr: line_of(tree, pr[0]))
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"{source_name}:{line_of(tree, loc)}: {format_loc(loc, 'constitution')}: {msg}{more}"
        )
    return constitution


def load_constitution(path: str | Path) -> Constitution:
    """Load a constitution YAML file; InputError (``FILE:LINE: message``) when it is invalid."""
    return load_constitution_text(read_text(path), str(path))


def pack_names() -> list[str]:
    """Names of the constitution packs bundled with the package."""
    return sorted(
        f.name.removesuffix(".yaml") for f in files(PACKS).iterdir() if f.name.endswith(".yaml")
    )


def pack_path(name: str) -> Path:
    """Path of a bundled pack; InputError for an unknown name."""
    if name not in pack_names():
        raise InputError(
            f"no bundled constitution {name!r}: known packs are {', '.join(pack_names())}"
        )
    return Path(str(files(PACKS).joinpath(f"{name}.yaml")))


def default_constitution_path() -> Path:
    """Path of the bundled default constitution."""
    return pack_path(DEFAULT_PACK)


def load_default() -> Constitution:
    """The bundled default constitution."""
    return load_constitution(default_constitution_path())


def resolve_constitution(path_or_name: str | Path | None = None) -> Constitution:
    """None: the default pack; an existing path: that file; otherwise a bundled pack name.

    A string that is neither an existing file nor a pack name is reported as a missing file.
    """
    if path_or_name is None:
        return load_default()
    p = Path(path_or_name)
    if not p.exists() and str(path_or_name) in pack_names():
        return load_constitution(pack_path(str(path_or_name)))
    return load_constitution(p)
