"""Training data: JSONL record files to the row dicts TRL's trainers read.

Owns: reading SFT and preference files (strict, file:line errors), their sha256 for provenance,
the seeded mix of SL-CAI revisions with helpfulness data, and the conversion to TRL's
conversational formats (``prompt``/``completion`` for SFT; ``prompt``/``chosen``/``rejected``
for DPO and reward modelling).
Must not know: models, tokenizers or trainers; nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from cai.errors import InputError
from cai.records import Message, PreferenceRecord, SFTExample, Strict
from cai.store import read_jsonl_numbered

Row = dict[str, Any]


class DataFile(Strict):
    """One input file of a training run."""

    path: str
    """The file as given (resolved to an absolute path)."""
    sha256: str
    """Hex sha256 of the file's bytes when it was read."""
    records: int = Field(ge=0)
    """Records read from it (before mixing or filtering)."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def chat_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the role/content dicts chat templates and TRL read."""
    return [{"role": m.role, "content": m.content} for m in messages]


def read_sft(paths: Sequence[Path]) -> tuple[list[SFTExample], list[DataFile]]:
    """Every SFTExample in the files, in order; an example must end with an assistant turn."""
    examples: list[SFTExample] = []
    files: list[DataFile] = []
    for path in paths:
        path = Path(path).expanduser().resolve()
        numbered = list(read_jsonl_numbered(path, SFTExample))
        got = [ex for _, ex in numbered]
        for line, ex in numbered:
            if len(ex.messages) < 2 or ex.messages[-1].role != "assistant":
                raise InputError(
                    f"{path}:{line}: messages must end with an assistant turn that "
                    "follows at least one prompt turn"
                )
        examples += got
        files.append(DataFile(path=str(path), sha256=sha256_file(path), records=len(got)))
    return examples, files


def read_preferences(paths: Sequence[Path]) -> tuple[list[PreferenceRecord], list[DataFile]]:
    """Every PreferenceRecord in the files, in order; an empty file, or a pair id seen twice (in
    one file or across them), is an error naming the file and line."""
    records: list[PreferenceRecord] = []
    files: list[DataFile] = []
    seen: dict[str, str] = {}  # pair id -> "file:line" where it first appeared
    for path in paths:
        path = Path(path).expanduser().resolve()
        numbered = list(read_jsonl_numbered(path, PreferenceRecord))
        if not numbered:
            raise InputError(f"{path}: no preference records (the file is empty)")
        got = [rec for _, rec in numbered]
        for line, rec in numbered:
            # The same pair twice would count its preference twice in the loss.
            if rec.id in seen:
                raise InputError(
                    f"{path}:{line}: duplicate preference id {rec.id!r} (first at {seen[rec.id]})"
                )
            seen[rec.id] = f"{path}:{line}"
            turns = (rec.chosen[-1:], rec.rejected[-1:])
            if not rec.prompt or any(not t or t[0].role != "assistant" for t in turns):
                raise InputError(
                    f"{path}:{line}: a preference needs a prompt and chosen and "
                    "rejected turns that end with an assistant message"
                )
        records += got
        files.append(DataFile(path=str(path), sha256=sha256_file(path), records=len(got)))
    return records, files


@dataclass(frozen=True)
class SFTMix:
    """The SFT training set: revisions plus the sampled helpfulness examples, shuffled."""

    examples: list[SFTExample]
    """Training examples in training order."""
    n_revision: int
    """How many came from the SL-CAI files (all of them)."""
    n_helpful: int
    """How many helpfulness examples were sampled in."""


def mix_sft(
    revisions: Sequence[SFTExample],
    helpful: Sequence[SFTExample],
    ratio: float,
    seed: int,
) -> SFTMix:
    """All revisions plus ``round(ratio * len(revisions))`` helpfulness examples, shuffled.

    The helpfulness examples are drawn without replacement by a ``random.Random(seed)`` shuffle,
    so the same files and seed always give the same set in the same order. When the pool is
    smaller than asked for, all of it is used (never duplicated): ``n_helpful`` says how many.
    """
    if ratio < 0:
        raise InputError(f"helpful_ratio must be >= 0, got {ratio}")
    rng = random.Random(seed)
    want = round(ratio * len(revisions))
    pool = list(helpful)
    rng.shuffle(pool)
    picked = pool[:want]
    mixed = [*revisions, *picked]
    rng.shuffle(mixed)
    return SFTMix(mixed, len(revisions), len(picked))


def sft_rows(examples: Sequence[SFTExample]) -> list[Row]:
    """TRL conversational prompt-completion rows: the loss covers the last assistant turn only."""
    return [
        {"prompt": chat_dicts(ex.messages[:-1]), "completion": chat_dicts(ex.messages[-1:])}
        for ex in examples
    ]


def preference_rows(records: Sequence[PreferenceRecord], *, margin_scale: float = 0.0) -> list[Row]:
    """TRL conversational preference rows; with ``margin_scale`` a ``margin`` column as well."""
    rows: list[Row] = []
    for rec in records:
        row: Row = {
            "prompt": chat_dicts(rec.prompt),
            "chosen": chat_dicts(rec.chosen),
            "rejected": chat_dicts(rec.rejected),
        }
        if margin_scale:
            row["margin"] = margin_scale * rec.margin
        rows.append(row)
    return rows
