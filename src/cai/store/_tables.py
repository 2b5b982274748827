"""CSV files of named columns, read row by row with the line each row starts on.

Owns: the one CSV reader every user-facing table goes through (prompt sets, labelled replies,
judge-label files): a header row, a BOM from spreadsheet exports dropped, quoted fields that span
lines reported at the line they start on, blank rows skipped, short rows padded with empty
cells, and a ``FILE:LINE`` error for bad CSV, a NUL byte or a row with more cells than the header.
Must not know: what the columns mean.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.errors import InputError
from cai.store._jsonl import reject_lone_surrogates


def read_csv_dicts(
    path: str | Path, *, shown: str | None = None
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header's column names, and (line number, row) for every non-blank row.

    ``shown`` is how the file is named in errors (default: the path). The header is read at
    once, so a missing or empty file fails before any row is used.
    """
    p = Path(path)
    name = shown or str(p)
    return _csv_text(_read_text(p, name), name)


def _read_text(p: Path, name: str) -> str:
    """The file's text: gunzipped when it ends in .gz, a BOM dropped; InputError otherwise."""
    if not p.is_file():
        raise InputError(f"{name}: no such file")
    raw = p.read_bytes()
    if p.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise InputError(f"{name}: not a gzip file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM from spreadsheet exports is dropped
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}:{line}: not UTF-8 text ({exc.reason})") from None
    if "\0" in text:  # a binary or corrupt file; read on, the NUL would end up in a prompt
        line = text.count("\n", 0, text.index("\0")) + 1
        raise InputError(f"{name}:{line}: NUL byte (a binary file, not text)")
    return text


def _csv_text(text: str, name: str) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    # Rows end at \n, \r\n or \r only (as csv wants, newline=""): str.splitlines would also
    # break at U+2028, U+0085 and form feeds inside a cell.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"{name}:1: not valid CSV ({exc})") from None
    if not header:
        raise InputError(f"{name}:1: empty CSV file (expected a header row)")
    names = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            start = reader.line_num + 1  # a quoted field may span lines: report where it starts
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"{name}:{start}: not valid CSV ({exc})") from None
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise InputError(f"{name}:{start}: {len(cells)} cells but {len(names)} columns")
            cells += [""] * (len(names) - len(cells))  # a short row has empty trailing cells
            yield start, dict(zip(names, cells, strict=True))

    return names, rows()


def read_table(
    path: str | Path, *, shown: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a ``.csv`` (header row) or ``.jsonl``/``.json`` (one object a line)
    file, optionally gzipped (``.jsonl.gz``); blank lines skipped, FILE:LINE errors."""
    p = Path(path)
    name = shown or str(p)
    stem = p.name.removesuffix(".gz").lower()
    if not stem.endswith((".csv", ".jsonl", ".json")):
        raise InputError(f"{name}: expected a .csv, .jsonl or .jsonl.gz file")
    text = _read_text(p, name)
    if stem.endswith(".csv"):
        yield from _csv_text(text, name)[1]
        return
    for lineno, raw in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is text
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        reject_lone_surrogates(raw.encode("utf-8", "surrogatepass"), obj, f"{name}:{lineno}")
        yield lineno, obj
