"""Degenerate replies: empty, looping, or only repeating the prompt. Pure text checks, no model.

Owns: the text normalisation, near-duplicate and repeated n-gram rules, shared by the evaluation
(a helpful prompt counts as answered only by a reply that is not degenerate) and by critique's
SFT filter, and the reasons ``degenerate_reply`` returns.
Must not know: detectors, models, files, or what a workflow does with the verdict.

A reply cut off by the token limit is not degenerate here: a fair answer may stop mid-word.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

REPLY_REASONS = ("empty", "echo_prompt", "repetitive")
"""Every reason ``degenerate_reply`` can return, in the order they are checked."""


def normalized(text: str) -> str:
    """Lower-case words only: punctuation becomes space, whitespace collapses."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def similar(a: str, b: str, threshold: float) -> bool:
    """The normalised texts match with ``difflib`` ratio ``threshold`` or more (empty: never)."""
    na, nb = normalized(a), normalized(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    matcher = SequenceMatcher(None, na, nb, autojunk=False)
    # The quick ratios are upper bounds of ratio(): cheap rejections, same answers.
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return False
    return matcher.ratio() >= threshold


def word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """Every run of ``n`` consecutive normalised words, in order."""
    words = normalized(text).split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def repeats(text: str, n: int = 6, times: int = 3) -> bool:
    """Some run of ``n`` words occurs ``times`` or more: a model stuck in a loop."""
    counts: dict[tuple[str, ...], int] = {}
    for g in word_ngrams(text, n):
        counts[g] = counts.get(g, 0) + 1
        if counts[g] >= times:
            return True
    return False


def degenerate_reply(prompt: str, reply: str) -> str | None:
    """Why ``reply`` is no answer to ``prompt`` (one of ``REPLY_REASONS``), or None when it may be.

    empty: fewer than two characters of words; echo_prompt: the prompt again (90% similar);
    repetitive: a run of six words occurs three times (looping).
    """
    if len(normalized(reply)) < 2:
        return "empty"
    if similar(reply, prompt, 0.9):
        return "echo_prompt"
    if repeats(reply):
        return "repetitive"
    return None
