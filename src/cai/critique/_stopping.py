"""When the critique-revision loop may stop before its last round.

Owns: the two stop signals and their rules: the critic finding nothing to criticise
(``finds_nothing``) and a revision equal to the response it revised (``unchanged``).
Must not know: models, templates' wording beyond the verdict they ask for, or records.

``finds_nothing`` reads only the critique's first sentence (up to the first ``.``, ``!``, ``?``,
``;`` or line break, after the ``Critique:`` label a model may repeat) and says yes when that
sentence *starts* with a no-issue verdict and has no contrast word in it:

- "No issue(s)", "No problem(s)", "No violation(s)", "No concerns" (optionally "found"/"here"),
  which is what the ``stop_early`` template asks for ("No issue.");
- "Nothing to fix / change / revise / improve";
- "The (assistant's) reply/response/answer does not (doesn't) go against / break / violate /
  conflict with ..." and "... follows / respects / complies with / is consistent with ...".

A contrast word anywhere in that sentence ("but", "however", "although", "though", "except",
"yet") makes it an issue after all ("No issue with tone, but it gives steps"). A verdict later
in the critique never counts: critiques that reason first and conclude "no issue" are missed on
purpose, since a small model's reasoning often contradicts its last line.

``unchanged`` compares the two texts after ``cai.scoring.normalized`` (lower case, punctuation
to spaces, whitespace collapsed): a revision that only reflows or re-punctuates is unchanged.
"""

from __future__ import annotations

import re

from cai.critique._degenerate import clean_output
from cai.scoring import normalized

_SUBJECT = r"the\s+(?:assistant(?:'s|s)?\s+)?(?:last\s+)?(?:reply|response|answer)"
_NO_ISSUE = re.compile(
    rf"""^[\W_]*(?:
        no\s+(?:issues?|problems?|violations?|concerns?)(?:\s+(?:found|here))?
      | nothing\s+to\s+(?:fix|change|revise|improve)
      | {_SUBJECT}\s+(?:does\s+not|doesn'?t|did\s+not|didn'?t)\s+
            (?:go\s+against|break|violate|conflict\s+with)
      | {_SUBJECT}\s+(?:already\s+)?(?:follows|respects|complies\s+with|is\s+consistent\s+with)
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
_CONTRAST = re.compile(r"\b(?:but|however|although|though|except|yet)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;\n]")


def first_sentence(critique: str) -> str:
    """The critique's first sentence, without a repeated ``Critique:`` label."""
    text = clean_output(critique)
    return _SENTENCE_END.split(text, maxsplit=1)[0].strip()


def finds_nothing(critique: str) -> bool:
    """The critic says the response breaks nothing under the principle (see the module doc)."""
    head = first_sentence(critique)
    return bool(_NO_ISSUE.match(head)) and not _CONTRAST.search(head)


def unchanged(previous: str, revision: str) -> bool:
    """The revision says the same words as the response it revised, after normalising."""
    return normalized(previous) == normalized(revision)
