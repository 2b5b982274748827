"""Checks that keep broken critique-revision outputs out of the SFT data.

Owns: the list of degeneracy reasons and the rule for each. A degenerate record stays in the
trace with its reason and is counted; it is never written to the SFT file.
Must not know: models, files or templates. The text rules (normalising, near-duplicates, looping)
live in ``cai.scoring``, shared with the evaluation's check of helpful answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cai.records import FinishReason
from cai.scoring import normalized as _norm
from cai.scoring import repeats
from cai.scoring import similar as _similar
from cai.scoring import word_ngrams as _ngrams

REASONS = (
    "empty",
    "echo_prompt",
    "echo_few_shot",
    "unchanged",
    "repetitive",
    "truncated",
    "empty_critique",
)
"""Every reason ``degeneracy`` can return, in the order they are checked."""

_LABEL = re.compile(
    r"^\s*(revised reply|revision|rewritten reply|new reply|assistant|answer|critique)\s*:\s*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"""[.!?)\]"'`*:;>\u2026]\s*$""")


def clean_output(text: str) -> str:
    """Strip whitespace and a leading label the model may repeat ('Revised reply: ...')."""
    text = text.strip()
    for _ in range(2):
        text = _LABEL.sub("", text, count=1).strip()
    return text


def copies_from(text: str, sources: Iterable[str], n: int = 8) -> bool:
    """``text`` shares a run of ``n`` words with one of ``sources`` (a copied sentence)."""
    mine = set(_ngrams(text, n))
    return bool(mine) and any(mine & set(_ngrams(src, n)) for src in sources)


def looks_truncated(text: str, finish: FinishReason) -> bool:
    """Cut off by the token limit in the middle of a sentence (code blocks count as ended)."""
    if finish != "length":
        return False
    return not _SENTENCE_END.search(text) and not text.rstrip().endswith("```")


def trim_to_sentence(text: str, min_words: int = 12) -> str | None:
    """Cut a length-limited answer back to its last complete sentence (or paragraph).

    Returns None when too little is left to be a useful answer. Used for helpfulness data, where
    a cut answer trimmed at a sentence end is still a fair example of answering the request.
    """
    cut = max(
        text.rfind(". "), text.rfind(".\n"), text.rfind("\n\n"), text.rfind("! "), text.rfind("? ")
    )
    if text.rstrip().endswith((".", "!", "?")):
        cut = len(text.rstrip()) - 1
    if cut <= 0:
        return None
    kept = text[: cut + 1].rstrip()
    return kept if len(kept.split()) >= min_words else None


def degeneracy(
    *,
    prompt: str,
    draft: str,
    final: str,
    final_finish: FinishReason,
    critiques: Iterable[str],
    few_shot_texts: Iterable[str],
) -> str | None:
    """The first reason this revision must not be trained on, or None when it is usable."""
    if len(_norm(final)) < 2:
        return "empty"
    if _similar(final, prompt, 0.9):
        return "echo_prompt"
    examples = list(few_shot_texts)
    if any(_similar(final, t, 0.85) for t in examples) or copies_from(final, examples):
        return "echo_few_shot"
    if _similar(final, draft, 0.97):
        return "unchanged"
    if repeats(final):
        return "repetitive"
    if looks_truncated(final, final_finish):
        return "truncated"
    if any(len(_norm(c)) < 2 for c in critiques):
        return "empty_critique"
    return None
