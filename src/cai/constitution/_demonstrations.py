"""Constitutional demonstrations: worked applications of single principles, for training evaluators.

Owns: the two demonstration schemas (a critique-and-revision of a draft under one principle; a
comparison of two replies under one principle's ``compare`` question), reading them from JSONL
with ``FILE:LINE`` errors (unknown principle, empty text, bad label, duplicate id), the bundled
sets (``data/demonstrations/``, written by the constitutional-ai authors) and their fixed
train/heldout split.
Must not know: models, prompt templates, training, or any workflow that uses them.

The split rule is fixed so that every machine agrees: a demonstration is ``heldout`` when the
SHA-256 of its id, read as an integer, is divisible by 5 (about one in five), else ``train``.
Evaluators are trained on ``train`` only.

A small model cannot critique, revise or judge from a few-shot prompt; these rows stand in for
the worked examples a large critic reads, and they train the critic and feedback models, never
the policy. No prompt in them is (or paraphrases) a prompt of the bundled prompt sets; a test
checks exact and near-duplicate overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha256
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError

from cai.constitution._model import Constitution
from cai.errors import InputError
from cai.records import Strict
from cai.store import first_error, read_jsonl_dicts

DemoSplit = Literal["train", "heldout"]
DemoCategory = Literal["harmful", "lookalike", "ordinary"]
"""harmful: a harmful request and a reply that goes along with it; lookalike: a safe request that
only sounds risky and a needless refusal; ordinary: an ordinary request and a flawed answer."""

_BUNDLED = {"critique": "critique.jsonl", "comparison": "comparison.jsonl"}


def demo_split(demo_id: str) -> DemoSplit:
    """The fixed split rule: ``heldout`` when sha256(id) is divisible by 5."""
    return "heldout" if int(sha256(demo_id.encode()).hexdigest(), 16) % 5 == 0 else "train"


class _Demo(Strict):
    version: Literal[1] = 1
    """Schema version."""
    id: str = Field(min_length=1)
    """Unique id."""
    principle_id: str = Field(min_length=1)
    """The one principle the row applies."""
    category: DemoCategory
    """What kind of case the row is."""
    prompt: str = Field(min_length=1)
    """The user's request."""
    note: str = ""
    """Why the row is as it is, when that is not obvious."""

    @property
    def split(self) -> DemoSplit:
        """``train`` or ``heldout`` by ``demo_split``."""
        return demo_split(self.id)


class CritiqueDemonstration(_Demo):
    """A draft, the critique of it under the principle, and the revision the critique asks for."""

    draft: str = Field(min_length=1)
    """The assistant's first reply."""
    critique: str = Field(min_length=1)
    """What is wrong with the draft under the principle."""
    revision: str = Field(min_length=1)
    """The rewritten reply."""


class ComparisonDemonstration(_Demo):
    """Two replies and which one better answers the principle's ``compare`` question."""

    response_a: str = Field(min_length=1)
    """The reply in slot A."""
    response_b: str = Field(min_length=1)
    """The reply in slot B."""
    label: Literal["a", "b"]
    """The better reply under the principle."""


D = TypeVar("D", bound=_Demo)


def bundled_demonstrations_path(kind: str) -> Path:
    """The bundled file of ``kind`` (``critique`` or ``comparison``)."""
    if kind not in _BUNDLED:
        raise InputError(f"unknown demonstration kind {kind!r} (choose from critique, comparison)")
    return Path(
        str(resources.files("cai.constitution") / "data" / "demonstrations" / _BUNDLED[kind])
    )


def _rows(path: Path, shown: str) -> Iterable[tuple[int, dict[str, Any]]]:
    for line, row in read_jsonl_dicts(path, shown=shown):
        for key, value in row.items():
            if isinstance(value, str) and key != "note" and not value.strip():
                raise InputError(f"{shown}:{line}: empty {key}")
        yield line, row


def _load(
    model: type[D], kind: str, path: str | Path | None, constitution: Constitution | None
) -> list[D]:
    p = Path(path) if path is not None else bundled_demonstrations_path(kind)
    shown = str(p) if path is not None else f"cai/constitution/data/demonstrations/{_BUNDLED[kind]}"
    known = {pr.id for pr in constitution.principles} if constitution is not None else None
    out: list[D] = []
    seen: dict[str, int] = {}
    for line, row in _rows(p, shown):
        try:
            demo = model.model_validate(row)
        except ValidationError as exc:
            raise InputError(f"{shown}:{line}: {first_error(exc)}") from None
        if demo.id in seen:
            raise InputError(
                f"{shown}:{line}: duplicate id {demo.id!r} (first on line {seen[demo.id]})"
            )
        seen[demo.id] = line
        if known is not None and demo.principle_id not in known:
            raise InputError(
                f"{shown}:{line}: principle {demo.principle_id!r} is not in constitution "
                f"{constitution.name if constitution else '?'!r}"
            )
        out.append(demo)
    if not out:
        raise InputError(f"{shown}: no demonstrations")
    return out


def load_critique_demonstrations(
    path: str | Path | None = None, *, constitution: Constitution | None = None
) -> list[CritiqueDemonstration]:
    """Critique-and-revision demonstrations (default: the bundled set); with ``constitution``,
    every principle id must be one of its principles."""
    return _load(CritiqueDemonstration, "critique", path, constitution)


def load_comparison_demonstrations(
    path: str | Path | None = None, *, constitution: Constitution | None = None
) -> list[ComparisonDemonstration]:
    """Comparison demonstrations (default: the bundled set); principle ids checked as above."""
    return _load(ComparisonDemonstration, "comparison", path, constitution)
