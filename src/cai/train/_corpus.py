"""The pre-training corpus: a user's text or JSONL file, and the labelled segments training reads.

Owns: ``CorpusRow`` (one row of a user's JSONL corpus), reading a corpus file (JSONL rows, or
any other file as UTF-8 text cut into paragraphs at blank lines) with ``FILE:LINE`` errors,
``PretrainSegment`` (one segment with its control token and where it came from: what
``data/pretrain_corpus.jsonl`` holds) and reading those files back.
Must not know: how a segment's control token is chosen (the pipeline's scorer does that),
constitutions, models or tokenizers. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from cai.backends import find_control_token, is_control_token
from cai.errors import InputError
from cai.records import Strict
from cai.store import read_jsonl_numbered
from cai.train._data import DataFile, sha256_file


class CorpusRow(Strict):
    """One row of a user's JSONL corpus (``stages.pretrain.corpus``)."""

    version: Literal[1] = 1
    """Schema version."""
    id: str | None = None
    """Row id (default: FILE:LINE)."""
    text: str = Field(min_length=1)
    """The segment: a reply when ``prompt`` is given, else prose."""
    prompt: str | None = None
    """The request ``text`` answers (the segment is then that chat turn pair)."""
    harmful: bool | None = None
    """Whether the request is harmful; needed with a prompt unless ``label`` is given."""
    principle_id: str | None = None
    """The principle a harmful request falls under (the one a compliant reply violates), or
    for a safe request the one a refusal violates (default: the over-refusal principle)."""
    label: str | None = None
    """``ok`` or a principle id: given, the scorer is not asked."""


def _check_text(path: Path, line: int, *texts: str | None) -> None:
    for text in texts:
        token = find_control_token(text or "")
        if token is not None:
            raise InputError(
                f"{path}:{line}: the text holds the control token {token}; "
                "corpus text must not carry its own labels"
            )


def read_corpus(path: str | Path) -> list[tuple[int, CorpusRow]]:
    """(line, row) for every segment of a corpus file: a ``.jsonl`` file of ``CorpusRow``, any
    other file as UTF-8 text, one segment per paragraph (lines up to a blank line).

    A broken line (not JSON, a wrong field, not UTF-8, a NUL byte, a control token in the
    text, a prompt with neither ``harmful`` nor ``label``) is an InputError naming file and
    line; a file with no segment is one naming the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: no such corpus file")
    rows: list[tuple[int, CorpusRow]] = []
    if p.suffix == ".jsonl":
        for line, row in read_jsonl_numbered(p, CorpusRow):
            _check_text(p, line, row.text, row.prompt)
            if row.prompt is not None and row.harmful is None and row.label is None:
                raise InputError(f"{p}:{line}: a row with a prompt needs harmful or label")
            if row.harmful and row.principle_id is None and row.label is None:
                raise InputError(f"{p}:{line}: a harmful request needs principle_id or label")
            rows.append((line, row))
    else:
        rows = _paragraphs(p)
    if not rows:
        raise InputError(f"{p}: no text (the corpus file is empty)")
    return rows


def _paragraphs(path: Path) -> list[tuple[int, CorpusRow]]:
    out: list[tuple[int, CorpusRow]] = []
    lines: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if b"\x00" in raw:
            raise InputError(f"{path}:{n}: a NUL byte (binary data, not text)")
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"{path}:{n}: not UTF-8 text") from None
        _check_text(path, n, text)
        if text.strip():
            if not lines:
                start = n
            lines.append(text.strip())
        elif lines:
            out.append((start, CorpusRow(text=" ".join(lines))))
            lines = []
    if lines:
        out.append((start, CorpusRow(text=" ".join(lines))))
    return out


class PretrainSegment(Strict):
    """One segment of the pre-training corpus, tagged with its control token."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """Unique id (source and record id)."""
    source: str
    """Where the text came from (``sl_cai.draft``, ``sl_cai.revision``, ``respond.helpful``,
    ``respond.lookalike``, or ``FILE:LINE`` of a user corpus)."""
    prompt: str | None = None
    """The request the text answers (None: prose, trained on as it is)."""
    text: str = Field(min_length=1)
    """The reply (or prose) the model is trained on after the control token."""
    control: str
    """``<|ok|>`` or ``<|violates:ID|>``: what the scorer decided."""
    principle_id: str | None = None
    """The principle the decision was about (None: nothing to judge, e.g. prose)."""
    reason: str
    """Why the scorer chose the token (request kind and detector label, or 'label in file')."""
    scorer: str
    """The instrument that chose it (``rules@VERSION``, ``file``...)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Model spec per role that wrote the text (policy, critic); empty for a user's text."""
    template_version: str | None = None
    """Prompt templates that produced the text (None: a plain chat or a user's text)."""
    seed: int | None = None
    """Seed of the run that produced the text (None: a user's text)."""


def read_segments(paths: Sequence[Path]) -> tuple[list[PretrainSegment], list[DataFile]]:
    """Every segment in the files, in order; a segment whose ``control`` is not a control
    token is an error naming file and line."""
    segments: list[PretrainSegment] = []
    files: list[DataFile] = []
    for path in paths:
        path = Path(path).expanduser().resolve()
        numbered = list(read_jsonl_numbered(path, PretrainSegment))
        for line, seg in numbered:
            if not is_control_token(seg.control):
                raise InputError(f"{path}:{line}: {seg.control!r} is not a control token")
        segments += [seg for _, seg in numbered]
        files.append(DataFile(path=str(path), sha256=sha256_file(path), records=len(numbered)))
    return segments, files
