"""Escalating critique rounds: which of the constitution's principle sets each round draws from.

Owns: turning ``Constitution.escalation`` (explicit levels of principle ids, or ``{by: tier}``)
into principle sets, and the rule that picks a round's level for one request.
Must not know: how a principle is sampled from the set, the critic, or what a round does.

The rule: round k (0-based) asks for level min(k, levels - 1), so the last level repeats when
there are more rounds than levels. A level counts only through its principles that the request
may be critiqued under (``eligible``: ``Constitution.applicable`` or the router's options); when
none of the asked level's principles is eligible, the round moves up to the next level that has
one, and failing that down to the nearest lower one. With no eligible principle in any level the
round is not escalated (the caller samples from ``eligible`` as without escalation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cai.constitution._model import Constitution, Principle, escalation_tiers


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """The set one round draws from."""

    level: int
    """1-based level of the constitution's escalation."""
    options: list[Principle]
    """The level's principles that are eligible for the request, in level order."""


def escalation_levels(constitution: Constitution) -> list[list[Principle]]:
    """The principle sets of the escalation, round order; [] when the constitution has none."""
    esc = constitution.escalation
    if esc is None:
        return []
    by_id = {p.id: p for p in constitution.principles}
    if isinstance(esc, list):
        return [[by_id[i] for i in level if i in by_id] for level in esc]
    return [
        [p for p in constitution.principles if p.tier == t] for t in escalation_tiers(constitution)
    ]


def escalation_step(
    levels: Sequence[Sequence[Principle]], round_index: int, eligible: Sequence[Principle]
) -> EscalationStep | None:
    """The level round ``round_index`` (0-based) draws from for a request whose eligible
    principles are ``eligible``; None when no level has an eligible principle."""
    if not levels:
        return None
    wanted = min(round_index, len(levels) - 1)
    order = [*range(wanted, len(levels)), *range(wanted - 1, -1, -1)]
    ok = {p.id for p in eligible}
    for k in order:
        options = [p for p in levels[k] if p.id in ok]
        if options:
            return EscalationStep(level=k + 1, options=options)
    return None
