"""YAML files validated into strict pydantic models, every error one line ``FILE:LINE: msg``.

Owns: ruamel's round-trip parsing (which keeps line numbers), joining the escaped surrogate pairs
JSON tools write for emoji (a lone one is an error), turning its containers into plain values,
and mapping a pydantic error location back to the line that caused it. Used by the
constitution and recipe loaders.
Must not know: what the documents mean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from cai.errors import InputError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
_SURROGATE = re.compile("[\ud800-\udfff]")


def one_line(text: str) -> str:
    """Collapse whitespace so a message fits on one line."""
    return " ".join(text.split())


def format_loc(loc: Loc, root: str = "document") -> str:
    """('principles', 3, 'tier') -> 'principles[3].tier'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or root


def plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalar subclasses to plain Python values."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for base in (int, float, str):
        if isinstance(node, base):
            return base(node)
    return node  # dates, tagged scalars: left for pydantic to reject


def line_of(root: Any, loc: Loc) -> int:
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


def describe_error(err: Mapping[str, Any], root: str = "document") -> str:
    """One pydantic error as a message a person can act on."""
    loc: Loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{format_loc(loc[:-1], root)}: unknown key {loc[-1]!r}"
    if err["type"] == "missing":
        return f"{format_loc(loc[:-1], root)}: missing required field {loc[-1]!r}"
    return f"{format_loc(loc, root)}: {err['msg']}"


def parse_yaml(text: str, source: str) -> Any:
    """Round-trip parse; a syntax error names the source and line."""
    try:
        return _join_surrogates(YAML(typ="rt").load(text), source, (), None)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "syntax error"
        raise InputError(f"{source}:{line}: invalid YAML: {one_line(what)}") from None
    except YAMLError as exc:
        # A reader error (a NUL or other control character) carries only a character offset.
        pos = getattr(exc, "position", None)
        line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else 1
        raise InputError(f"{source}:{line}: invalid YAML: {one_line(str(exc))}") from None


def _join_surrogates(node: Any, source: str, loc: Loc, root: Any) -> Any:
    """Escaped UTF-16 surrogate pairs in strings (``"\\ud83d\\ude42"``, how JSON tools write an
    emoji, which YAML does not join) made the one character; a lone one is an error at its line:
    it is no character and could never be written out as UTF-8."""
    root = node if root is None else root
    if isinstance(node, dict):
        for key in list(node):
            if isinstance(key, str) and _SURROGATE.search(key):
                raise InputError(
                    f"{source}:{line_of(root, loc)}: invalid YAML: surrogate escape in key"
                )
            value = _join_surrogates(node[key], source, (*loc, key), root)
            if value is not node[key]:
                node[key] = value
    elif isinstance(node, list):
        for i, item in enumerate(node):
            value = _join_surrogates(item, source, (*loc, i), root)
            if value is not item:
                node[i] = value
    elif isinstance(node, str) and _SURROGATE.search(node):
        try:
            return node.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            line = line_of(root, loc)
            raise InputError(f"{source}:{line}: invalid YAML: a lone surrogate escape") from None
    return node


def read_text(path: str | Path) -> str:
    """A UTF-8 file's text, or an InputError naming the file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{p}:{line}: not UTF-8 text ({exc.reason})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text's universal newlines


def validate_tree(
    tree: Any,
    model: type[M],
    source: str,
    *,
    root: str = "document",
    context: dict[str, Any] | None = None,
) -> M:
    """Validate a parsed tree; report the error that comes first in the file, with its line."""
    if not isinstance(tree, CommentedMap):
        got = "an empty file" if tree is None else type(plain(tree)).__name__
        raise InputError(f"{source}:1: expected a mapping ({root}), got {got}")
    try:
        return model.model_validate(plain(tree), context=context)
    except ValidationError as exc:
        line, err = min(
            ((line_of(tree, tuple(e["loc"])), e) for e in exc.errors()), key=lambda t: t[0]
        )
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"{source}:{line}: {one_line(describe_error(err, root))}{more}") from None


def load_yaml_model(path: str | Path, model: type[M], *, root: str = "document") -> M:
    """Read, parse and validate a YAML file into ``model``."""
    return validate_tree(parse_yaml(read_text(path), str(path)), model, str(path), root=root)
