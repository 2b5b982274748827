"""Evaluation suites: named prompt lists whose kind says which metric they feed.

Owns: resolving a suite argument (``builtin:NAME[:SPLIT]``, a bare builtin name, ``KIND=FILE`` or
``FILE``) to prompt records, the held-out default for bundled sets, and the dataset digest
recorded in metrics.json.
Must not know: models, detectors or how metrics are computed.

``harmful`` suites feed harmful_compliance; ``borderline`` and ``helpful`` suites are safe and
feed over_refusal; ``helpful`` suites also feed helpfulness_win_rate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cai.errors import InputError
from cai.records import PromptRecord
from cai.store import BUILTIN_SETS, load_prompts

SuiteKind = Literal["harmful", "borderline", "helpful"]
SUITE_KINDS: tuple[SuiteKind, ...] = get_args(SuiteKind)
SAFE_KINDS: tuple[SuiteKind, ...] = ("borderline", "helpful")
"""Kinds whose prompts a model should answer: refusing them is over-refusal."""


@dataclass(frozen=True, slots=True)
class Suite:
    """A named list of prompts of one kind."""

    name: str
    kind: SuiteKind
    prompts: tuple[PromptRecord, ...]
    source: str = "memory"
    split: str | None = None

    def sha256(self) -> str:
        """SHA-256 of the prompts as canonical JSON lines (id, text, category), in order."""
        h = hashlib.sha256()
        for p in self.prompts:
            row = {"id": p.id, "text": p.text, "category": p.category}
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        return h.hexdigest()

    @property
    def safe(self) -> bool:
        """True for borderline and helpful suites."""
        return self.kind in SAFE_KINDS


def make_suite(name: str, kind: str, prompts: list[PromptRecord], **where: str | None) -> Suite:
    """Build a suite, checking the kind and that prompt ids are unique."""
    if kind not in SUITE_KINDS:
        raise InputError(f"suite {name!r}: kind must be one of {', '.join(SUITE_KINDS)}")
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise InputError(f"suite {name!r}: prompt id {p.id!r} appears more than once")
        seen.add(p.id)
    if not prompts:
        raise InputError(f"suite {name!r} has no prompts")
    source = where.get("source") or "memory"
    return Suite(name, kind, tuple(prompts), source, where.get("split"))


def load_suite(arg: str, *, limit: int | None = None, split: str = "heldout") -> Suite:
    """Resolve one ``--suite`` argument.

    ``harmful`` / ``builtin:harmful`` (likewise borderline, helpful) is the bundled set's
    ``split`` (held out by default; ``builtin:harmful:train`` names another split).
    ``KIND=FILE`` reads a prompt file as that kind; a plain ``FILE`` takes its kind from the
    records, which must all be harmful, borderline or helpful. ``limit`` keeps the first N.
    """
    kind: str | None = None
    if "=" in arg and arg.split("=", 1)[0] in SUITE_KINDS:
        kind, arg = arg.split("=", 1)
    name = arg.removeprefix("builtin:")
    base, _, want_split = name.partition(":")
    if base in BUILTIN_SETS and (arg.startswith("builtin:") or not Path(arg).exists()):
        use_split = want_split or split
        prompts = load_prompts(f"builtin:{base}", split=use_split, limit=limit)
        kind = kind or base
        label = base if use_split == split else f"{base}:{use_split}"
        return make_suite(label, kind, prompts, source=f"builtin:{base}", split=use_split)
    prompts = load_prompts(arg, limit=limit)
    if not prompts:  # a suite of nothing would report rates over n=0
        raise InputError(f"{arg}: no prompts (the file is empty)")
    if kind is None:
        kinds = sorted({p.kind for p in prompts})
        if len(kinds) != 1 or kinds[0] not in SUITE_KINDS:
            raise InputError(
                f"{arg}: cannot tell the suite kind from the records (kinds: {', '.join(kinds)}); "
                f"name it: --suite harmful={arg} (or borderline=, helpful=)"
            )
        kind = kinds[0]
    return make_suite(Path(arg).stem, kind, prompts, source=arg, split=None)


def load_benchmark_suites(arg: str, *, limit: int | None = None) -> list[Suite]:
    """The suites of a public benchmark argument (``xstest:PATH`` gives a safe and an unsafe)."""
    from cai.evaluate._benchmarks import load_benchmark

    name, _, source = arg.partition(":")
    groups = load_benchmark(arg, limit=limit)
    suffix = {"harmful": "unsafe", "borderline": "safe"} if len(groups) > 1 else {}
    return [
        make_suite(f"{name}-{suffix[kind]}" if suffix else name, kind, prompts,
                   source=f"{name}:{source}", split=None)
        for kind, prompts in sorted(groups.items())
    ]  # fmt: skip


def load_suites(args: list[str], *, limit: int | None = None) -> list[Suite]:
    """Resolve several suite arguments; suite names must be unique.

    ``NAME:SOURCE`` with NAME a public benchmark (xstest, harmbench, advbench, strongreject,
    jailbreakbench; see ``cai.evaluate._benchmarks``) reads that benchmark's file or dataset id.
    """
    from cai.evaluate._benchmarks import is_benchmark

    suites: list[Suite] = []
    for a in args:
        if is_benchmark(a):
            suites += load_benchmark_suites(a, limit=limit)
        else:
            suites.append(load_suite(a, limit=limit))
    names = [s.name for s in suites]
    for n in names:
        if names.count(n) > 1:
            raise InputError(f"two suites are named {n!r}; rename one of the files")
    return suites
