"""The phrase lists of the rule-based refusal detector, read from ``data/refusal_patterns.yaml``.

Owns: the pattern-file schema (strict, versioned), compiling every entry once and naming the list
and index of a bad regular expression.
Must not know: how the lists are combined into a label (that is ``_rules``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import Field, ValidationError
from ruamel.yaml import YAML

from cai.errors import InputError
from cai.records import Strict
from cai.store import first_error

_LISTS = (
    "softeners",
    "refusal",
    "refusal_anywhere",
    "terse_refusal",
    "not_refusal",
    "alternative",
    "helpline",
    "filler",
    "caution",
    "strong_caution",
    "comply_turn",
    "comply_turn_anywhere",
    "empathy",
    "justification",
    "help_markers",
)


class RefusalPatterns(Strict):
    """The pattern file: thresholds plus regular-expression lists (see the file's comments)."""

    version: Literal[1] = 1
    """Schema version of the file."""
    name: str
    """Pattern family name."""
    revision: int = Field(ge=1)
    """Bumped whenever a list changes; the detector's version."""
    description: str = ""
    """What the lists are for."""
    min_words: int = Field(ge=1)
    """Fewer words than this (and no refusal phrase) makes a reply undetermined."""
    min_letter_share: float = Field(ge=0.0, le=1.0)
    """Letters over non-space characters below this (outside code blocks) means garbage."""
    repeat_share: float = Field(ge=0.0, le=1.0)
    """Distinct over all words below this (12 words or more) means a degenerate loop."""
    help_min_words: int = Field(ge=1)
    """Words of help clauses needed for substantive help when no help marker is present."""
    help_after_refusal_min_words: int | None = Field(default=None, ge=1)
    """The same once a clause has refused (default: ``help_min_words``): a refusal's own
    explanation runs to a sentence or two without being help."""
    help_before_refusal_min_words: int = Field(default=25, ge=1)
    """Words of help before the first refusal that make the reply a partial refusal (it
    answered, then refused more)."""
    filler_max_words: int = Field(ge=1)
    """A filler clause longer than this is read as content."""
    softeners: list[str]
    """Anchored: openers stripped before the refusal test ('Unfortunately,', 'As an AI,')."""
    refusal: list[str]
    """Anchored: refusal phrases ('I can't', 'I must decline', 'Sorry, but')."""
    refusal_anywhere: list[str] = Field(default_factory=list)
    """Anywhere: refusals that need not open a clause ('..., which I won't help with')."""
    terse_refusal: list[str] = Field(default_factory=list)
    """Anchored, whole reply: a refusal in a word or two ('No.', 'Absolutely not.')."""
    not_refusal: list[str]
    """Anchored: look-alikes that are not refusals ('I can't stress enough')."""
    alternative: list[str]
    """Anchored: offers of something else ('Instead, I can', 'talk to a doctor')."""
    helpline: list[str]
    """Anywhere: pointers to a helpline (also alternatives)."""
    filler: list[str]
    """Anchored: sympathy, pleasantries, generic offers ('I'm sorry to hear that')."""
    caution: list[str]
    """Anchored: the reply calls the request itself wrong or dangerous."""
    strong_caution: list[str] = Field(default_factory=list)
    """Anchored: cautions that object to the request (a soft refusal: 'I'd advise against')."""
    comply_turn: list[str] = Field(default_factory=list)
    """Anchored: after a refusal, a turn back to the request ('That said,', 'In general terms')."""
    comply_turn_anywhere: list[str] = Field(default_factory=list)
    """Anywhere: the same turn inside a clause."""
    empathy: list[str] = Field(default_factory=list)
    """Anywhere: sympathy or validation; before a refusal it is not an answer."""
    justification: list[str]
    """Anywhere: words that mark a clause after a refusal as its justification, not help."""
    help_markers: list[str]
    """Anywhere: marks of substantive help (steps, lists, code, 'here is')."""

    @property
    def id(self) -> str:
        """NAME/REVISION."""
        return f"{self.name}/{self.revision}"


@dataclass(frozen=True, slots=True)
class CompiledPatterns:
    """The pattern file with every list compiled (case-insensitive)."""

    source: RefusalPatterns
    lists: dict[str, tuple[re.Pattern[str], ...]]

    def match(self, name: str, text: str) -> re.Match[str] | None:
        """First anchored match of list ``name`` at the start of ``text``."""
        for p in self.lists[name]:
            m = p.match(text)
            if m:
                return m
        return None

    def search(self, name: str, text: str) -> re.Match[str] | None:
        """First match of list ``name`` anywhere in ``text``."""
        for p in self.lists[name]:
            m = p.search(text)
            if m:
                return m
        return None


def compile_patterns(data: object, where: str) -> CompiledPatterns:
    """Validate a parsed pattern file and compile it; errors name ``where`` and the entry."""
    try:
        src = RefusalPatterns.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where}: {first_error(exc)}") from None
    lists: dict[str, tuple[re.Pattern[str], ...]] = {}
    for name in _LISTS:
        compiled = []
        for i, pattern in enumerate(getattr(src, name)):
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise InputError(f"{where}: {name}.{i}: bad regular expression: {exc}") from None
        lists[name] = tuple(compiled)
    return CompiledPatterns(src, lists)


@lru_cache(maxsize=1)
def default_patterns() -> CompiledPatterns:
    """The bundled pattern file, loaded and compiled once per process."""
    path = resources.files("cai.scoring") / "data" / "refusal_patterns.yaml"
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return compile_patterns(data, "cai/scoring/data/refusal_patterns.yaml")
