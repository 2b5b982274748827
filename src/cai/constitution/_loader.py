"""Constitution files: YAML text to a validated ``Constitution``, every error as ``FILE:LINE: msg``.

Owns: reading YAML with ruamel's round-trip loader (which keeps line numbers), mapping pydantic
errors and broken cross-references back to the line that caused them, and finding the bundled
packs.
Must not know: what the principles say or how they are used.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from cai.constitution._model import (
    DEFER_REFERENCES,
    Constitution,
    Loc,
    format_loc,
    reference_errors,
)
from cai.errors import InputError

PACKS = "cai.constitution.packs"
DEFAULT_PACK = "default"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalar subclasses to plain Python values."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for base in (int, float, str):
        if isinstance(node, base):
            return base(node)
    return node  # dates, tagged scalars: left for pydantic to reject


def _line_of(root: Any, loc: Loc) -> int:
    """1-based line of the deepest part of ``loc`` present in the ruamel tree."""
    line = 1
    node = root
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    return line


def _describe(err: Any) -> str:
    """One pydantic error as a message a person can act on."""
    loc: Loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{format_loc(loc[:-1])}: unknown key {loc[-1]!r}"
    if err["type"] == "missing":
        return f"{format_loc(loc[:-1])}: missing required field {loc[-1]!r}"
    return f"{format_loc(loc)}: {err['msg']}"


def _parse(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "syntax error"
        raise InputError(f"{source}:{line}: invalid YAML: {_one_line(what)}") from None
    except YAMLError as exc:
        raise InputError(f"{source}:1: invalid YAML: {_one_line(str(exc))}") from None


def load_constitution_text(text: str, source_name: str = "<string>") -> Constitution:
    """Parse and validate constitution YAML; errors name ``source_name`` and the line."""
    tree = _parse(text, source_name)
    if not isinstance(tree, CommentedMap):
        got = "an empty file" if tree is None else type(_plain(tree)).__name__
        raise InputError(f"{source_name}:1: expected a mapping with a constitution, got {got}")
    try:
        constitution = Constitution.model_validate(_plain(tree), context={DEFER_REFERENCES: True})
    except ValidationError as exc:
        # Report the error that comes first in the file, as a person reads it top to bottom.
        line, err = min(
            ((_line_of(tree, tuple(e["loc"])), e) for e in exc.errors()), key=lambda t: t[0]
        )
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"{source_name}:{line}: {_one_line(_describe(err))}{more}") from None
    problems = reference_errors(constitution)
    if problems:
        loc, msg = min(problems, key=lambda pr: _line_of(tree, pr[0]))
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{source_name}:{_line_of(tree, loc)}: {format_loc(loc)}: {msg}{more}")
    return constitution


def load_constitution(path: str | Path) -> Constitution:
    """Load a constitution YAML file; InputError (``FILE:LINE: message``) when it is invalid."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    return load_constitution_text(text, str(p))


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
