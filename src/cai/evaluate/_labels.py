"""Human label files for judge calibration: hh-rlhf transcripts, pairwise files, harm labels.

Owns: reading a label file (``.jsonl``, ``.jsonl.gz`` or ``.csv``) into ``PairLabel`` or
``HarmLabel`` items, telling the three schemas apart by their columns, splitting hh-rlhf
transcripts into the dialogue and the two final assistant replies, truncating long texts, and
the file digest recorded in calibration.json.
Must not know: judges, models or statistics.

Schemas (unknown extra columns are ignored; a missing required column is an error naming the line):
- hh-rlhf: ``chosen``, ``rejected``: transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."), the
  human-preferred one is ``chosen``. Which reply becomes response_a is drawn per item from a
  digest of (seed, line), so the human label is A about half of the time.
- pairwise: ``prompt``, ``response_a``, ``response_b``, ``label`` (``a``/``b``, ``A``/``B``,
  ``0``/``1`` meaning a/b, or ``response_a``/``response_b``), optional ``id``, ``kind`` (the
  prompt kind: harmful, borderline, helpful), ``principle`` (the principle id the pair tests)
  and ``category``.
- harm: ``prompt``, ``response``, ``harmful`` (true/false, 1/0, yes/no) or ``label``
  (``harmful``/``safe``), optional ``id``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cai.errors import InputError
from cai.records import digest
from cai.store import read_table

LabelKind = Literal["hh-rlhf", "pairwise", "harm"]

MAX_DIALOGUE_CHARS = 1500
"""Dialogue context kept before the final replies: the last turns that fit (whole turns when
possible), with a marker saying earlier turns were left out."""
MAX_REPLY_CHARS = 1000
"""Each reply keeps its first this-many characters, cut at a word, with a marker."""


@dataclass(frozen=True, slots=True)
class PairLabel:
    """Two replies to one request and which one people preferred."""

    id: str
    prompt: str
    response_a: str
    response_b: str
    a_better: bool
    kind: str = "harmful"
    truncated: bool = False
    principle: str | None = None
    """The principle the pair tests (its compare question is asked), when the file names one."""
    category: str | None = None
    """What kind of case the pair is, when the file says."""


@dataclass(frozen=True, slots=True)
class HarmLabel:
    """One reply to one request and whether people judged it harmful."""

    id: str
    prompt: str
    response: str
    harmful: bool
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class LabelSet:
    """The items of one label file and where they came from."""

    path: str
    kind: LabelKind
    sha256: str
    pairs: tuple[PairLabel, ...] = ()
    harm: tuple[HarmLabel, ...] = ()

    def __len__(self) -> int:
        return len(self.pairs) or len(self.harm)

    @property
    def truncated(self) -> int:
        """Items with a dialogue or reply shortened."""
        return sum(p.truncated for p in self.pairs) + sum(h.truncated for h in self.harm)


def truncate_reply(text: str, limit: int = MAX_REPLY_CHARS) -> tuple[str, bool]:
    """The first ``limit`` characters cut at a word boundary, and whether anything was cut."""
    text = text.strip()
    if len(text) <= limit:
        return text, False
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + " [...]", True


def _turns(transcript: str) -> list[tuple[str, str]]:
    """[(speaker, text)] of an hh-rlhf transcript; speaker is 'Human' or 'Assistant'."""
    out: list[tuple[str, str]] = []
    for chunk in transcript.split("\n\nHuman:"):
        if not chunk.strip():
            continue
        human, *assistant = chunk.split("\n\nAssistant:")
        out.append(("Human", human.strip()))
        out += [("Assistant", a.strip()) for a in assistant]
    return out


def dialogue_text(
    turns: list[tuple[str, str]], limit: int = MAX_DIALOGUE_CHARS
) -> tuple[str, bool]:
    """The dialogue before the final reply as text; a single turn is shown bare.

    Long dialogues keep their latest turns that fit in ``limit`` characters (the last human
    turn always, itself cut to ``limit``), preceded by a marker.
    """
    if len(turns) == 1:
        text, cut = truncate_reply(turns[0][1], limit)
        return text, cut
    lines = [f"{who}: {text}" for who, text in turns]
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if kept and size + len(line) > limit:
            break
        kept.insert(0, line)
        size += len(line) + 1
    cut = len(kept) < len(lines)
    if len(kept) == 1 and len(kept[0]) > limit:
        kept[0], _ = truncate_reply(kept[0], limit)
        cut = True
    prefix = ["[earlier turns left out]"] if cut and len(kept) < len(lines) else []
    return "\n".join(prefix + kept), cut


def split_hh(chosen: str, rejected: str) -> tuple[list[tuple[str, str]], str, str]:
    """(dialogue turns, chosen final reply, rejected final reply) of an hh-rlhf pair."""
    c, r = _turns(chosen), _turns(rejected)
    if not c or c[-1][0] != "Assistant" or not r or r[-1][0] != "Assistant":
        raise ValueError("a transcript does not end with an Assistant turn")
    return c[:-1], c[-1][1], r[-1][1]


def _kind_of(row: dict[str, Any]) -> LabelKind | None:
    if "chosen" in row and "rejected" in row:
        return "hh-rlhf"
    if "response_a" in row and "response_b" in row:
        return "pairwise"
    if "response" in row and ("harmful" in row or "label" in row):
        return "harm"
    return None


_A = {"a", "response_a", "0", "first"}
_B = {"b", "response_b", "1", "second"}
_TRUE = {"1", "true", "yes", "y", "harmful", "unsafe"}
_FALSE = {"0", "false", "no", "n", "safe", "harmless", "benign"}


def _text(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key!r} must be a non-empty string")
    return value


def _flag(value: Any, yes: set[str], no: set[str], where: str, what: str) -> bool:
    s = str(value).strip().lower()
    if s in yes:
        return True
    if s in no:
        return False
    raise InputError(f"{where}: {what} must be one of {sorted(yes | no)}, got {value!r}")


def load_labels(
    path: str | Path, *, seed: int = 0, limit: int | None = None, kind: str = "harmful"
) -> LabelSet:
    """Read a label file; the schema is told by the first row's columns (see module doc).

    ``kind`` is the prompt kind of hh-rlhf items and of pairwise rows without a ``kind`` column:
    it picks which principles the comparison may ask (``harmful`` leaves out helpfulness).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: label file not found")
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    schema: LabelKind | None = None
    pairs: list[PairLabel] = []
    harm: list[HarmLabel] = []
    seen: set[str] = set()
    for line, row in read_table(p):
        where = f"{p}:{line}"
        row_kind = _kind_of(row)
        if row_kind is None:
            raise InputError(
                f"{where}: cannot tell the label schema: need chosen/rejected (hh-rlhf), "
                "prompt/response_a/response_b/label (pairwise) or prompt/response/harmful (harm)"
            )
        schema = schema or row_kind
        if row_kind != schema:
            raise InputError(f"{where}: row looks like {row_kind} but the file is {schema}")
        rid = str(row.get("id") or f"{p.name.split('.')[0]}-{line}")
        if rid in seen:
            raise InputError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        if schema == "hh-rlhf":
            try:
                turns, good, bad = split_hh(
                    _text(row, "chosen", where), _text(row, "rejected", where)
                )
            except ValueError as exc:
                raise InputError(f"{where}: {exc}") from None
            prompt, cut0 = dialogue_text(turns)
            good, cut1 = truncate_reply(good)
            bad, cut2 = truncate_reply(bad)
            a_better = int(digest([seed, rid], length=8), 16) % 2 == 0
            a, b = (good, bad) if a_better else (bad, good)
            pairs.append(PairLabel(rid, prompt, a, b, a_better, kind, cut0 or cut1 or cut2))
        elif schema == "pairwise":
            a, cut1 = truncate_reply(_text(row, "response_a", where))
            b, cut2 = truncate_reply(_text(row, "response_b", where))
            label = _flag(row.get("label"), _A, _B, where, "label")
            pkind = str(row.get("kind") or kind)
            prompt = _text(row, "prompt", where)
            principle = row.get("principle")
            category = row.get("category")
            pairs.append(
                PairLabel(
                    rid,
                    prompt,
                    a,
                    b,
                    label,
                    pkind,
                    cut1 or cut2,
                    str(principle) if principle else None,
                    str(category) if category else None,
                )
            )
        else:
            reply, cut = truncate_reply(_text(row, "response", where))
            raw = row["harmful"] if "harmful" in row else row.get("label")
            flag = _flag(raw, _TRUE, _FALSE, where, "harmful")
            harm.append(HarmLabel(rid, _text(row, "prompt", where), reply, flag, cut))
        if limit is not None and len(pairs) + len(harm) >= limit:
            break
    if schema is None:
        raise InputError(f"{p}: no labelled items")
    return LabelSet(str(p), schema, sha, tuple(pairs), tuple(harm))
