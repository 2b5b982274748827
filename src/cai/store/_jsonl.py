"""Strict JSONL files: each line one pydantic record.

A crash can leave a last line without its newline; on resume that torn tail is cut off (it was
never a complete record) and everything before it is kept. A broken line anywhere else is an
error naming the file and line, never skipped silently; so is a lone surrogate escape
(``\\ud800``), which would load but could never be written out again as UTF-8.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cai.errors import InputError

M = TypeVar("M", bound=BaseModel)


def first_error(exc: ValidationError) -> str:
    """A validation error as one line: 'dotted.location: message (+N more)'."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(obj: Any) -> bool:
    if isinstance(obj, str):
        return _SURROGATE.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_surrogate(v) for v in obj)
    return False


def reject_lone_surrogates(raw: bytes, obj: Any, where: str) -> None:
    """InputError at ``where`` when the JSON text ``raw`` parsed to ``obj`` holds a lone UTF-16
    surrogate: an escape like ``\\ud800`` without its pair is no character and cannot be written
    back as UTF-8 (json joins real pairs, so any surrogate left is a lone one)."""
    if _SURROGATE_ESCAPE.search(raw) and _has_surrogate(obj):
        raise InputError(f"{where}: not valid JSON (a lone surrogate escape like \\ud800)")


def read_jsonl_dicts(
    path: str | Path, *, allow_torn_tail: bool = False, shown: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) per line. Blank lines are skipped; a bad line raises
    InputError naming the file (as ``shown``, default the path) and line.

    With ``allow_torn_tail`` a final line that has no newline and does not parse is ignored
    (the signature of a crash mid-write).
    """
    p = Path(path)
    name = shown or str(p)
    if not p.exists():
        raise InputError(f"{name}: no such file")
    with p.open("rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines)
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if allow_torn_tail and lineno == last:
                return
            raise InputError(f"{name}:{lineno}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        reject_lone_surrogates(raw, obj, f"{name}:{lineno}")
        yield lineno, obj


def read_jsonl_numbered(
    path: str | Path, model: type[M], *, allow_torn_tail: bool = False
) -> Iterator[tuple[int, M]]:
    """Yield (line number, validated record); a line that does not match names file:line."""
    for lineno, obj in read_jsonl_dicts(path, allow_torn_tail=allow_torn_tail):
        try:
            yield lineno, model.model_validate(obj)
        except ValidationError as exc:
            raise InputError(f"{path}:{lineno}: {first_error(exc)}") from None


def read_jsonl(path: str | Path, model: type[M], *, allow_torn_tail: bool = False) -> Iterator[M]:
    """Yield validated records; a line that does not match ``model`` names file:line."""
    for _, rec in read_jsonl_numbered(path, model, allow_torn_tail=allow_torn_tail):
        yield rec


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` atomically: a temporary sibling, fsynced, then renamed.

    A process killed mid-write leaves the old file (or none) and at most a ``.tmp`` sibling
    that the next write replaces; readers never see half a file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p


def write_records(path: str | Path, records: Iterable[BaseModel]) -> Path:
    """Write records as JSONL, replacing the file atomically (temp file + rename)."""
    return write_text_atomic(path, "".join(rec.model_dump_json() + "\n" for rec in records))


def write_json(path: str | Path, record: BaseModel) -> Path:
    """Write one record as indented JSON, replacing the file atomically (temp file + rename)."""
    return write_text_atomic(path, record.model_dump_json(indent=2) + "\n")


def cut_torn_tail(path: Path) -> None:
    """Cut a last line that has no newline (a crash mid-append) so the next append starts clean."""
    if not path.exists():
        return
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        fh.truncate(data.rfind(b"\n") + 1)


class JsonlWriter:
    """Append-only writer that resumes: existing complete records are kept and their ids known.

    ``done`` holds the ids already on disk, so a stage skips them and never writes a record twice.
    Each ``write`` is flushed and fsynced so an interrupted run loses at most the line in flight.
    """

    def __init__(self, path: str | Path, model: type[BaseModel], *, key: str = "id") -> None:
        self.path = Path(path)
        self.model = model
        self.key = key
        self.done: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._repair_and_index()
        self._fh = self.path.open("a", encoding="utf-8")

    def _repair_and_index(self) -> None:
        cut_torn_tail(self.path)  # a torn tail from a crash was never a complete record
        for rec in read_jsonl(self.path, self.model):
            self.done.add(str(getattr(rec, self.key)))

    def write(self, record: BaseModel) -> None:
        rid = str(getattr(record, self.key))
        if rid in self.done:
            return
        self._fh.write(record.model_dump_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(rid)

    def write_all(self, records: Iterable[BaseModel]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
