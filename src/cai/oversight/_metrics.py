"""How well each level does, measured against the human verdicts.

Owns: per-level accuracy against humans (Wilson 95% interval), escalation rates, the human
override rate, and the estimated error rate of the items humans never saw. The spot checks are a
seeded random draw from the non-escalated items, so the share of them whose AI label a human
changed estimates the error rate of the non-escalated items nobody reviewed.
Must not know: HTTP, files other than through the store, or how levels decide.
"""

from __future__ import annotations

from typing import Literal

from cai.oversight._config import OversightConfig
from cai.oversight._store import VerdictStore
from cai.records import Strict
from cai.scoring import NOT_CALIBRATED, Rate, Validation, proportion


class LevelMetrics(Strict):
    """One AI level against the humans."""

    level: str
    """Level id."""
    kind: str
    """Level kind."""
    accuracy: Rate
    """Share of human-reviewed items where this level's label equals the human label (items the
    level abstained on are left out of n)."""
    abstained: int
    """Reviewed items this level gave no label on."""
    escalation_rate: Rate
    """Share of all items that a rule on this level's verdict escalated."""
    validation: Validation = NOT_CALIBRATED
    """Whether this level is shown to agree with the humans: the lower end of its accuracy
    interval must beat always giving the reviewed items' most common human label."""


class OversightMetrics(Strict):
    """The oversight section of a run: written to ``oversight_metrics.json``."""

    version: Literal[1] = 1
    """Schema version."""
    config: str
    """Oversight config name@digest."""
    items: int
    """Items routed."""
    reviewed: int
    """Items with a current human verdict."""
    escalation_rate: Rate
    """Share of items escalated by any rule."""
    override_rate: Rate
    """Share of reviewed items whose dataset label a human changed."""
    levels: list[LevelMetrics]
    """Per AI level."""
    unseen_error_rate: Rate
    """Share of reviewed spot checks whose final AI label a human changed: the estimated error
    rate of the non-escalated items humans never saw."""
    unseen_items: int
    """Non-escalated items no human reviewed."""
    unseen_errors: tuple[float, float] | None
    """The 95% interval of the error rate times ``unseen_items``: expected wrong labels left."""


def _level_validation(accuracy: Rate, human_labels: list[str]) -> Validation:
    if accuracy.ci95 is None or not human_labels:
        return Validation(validated=False, reason="judge not validated: no human reviews yet")
    top = max(human_labels.count(x) for x in set(human_labels)) / len(human_labels)
    text = f"accuracy {accuracy.fmt()} against humans; the most common label alone gets {top:.3f}"
    if accuracy.ci95[0] > top:
        return Validation(validated=True, reason=text)
    return Validation(validated=False, reason=f"judge not validated: {text}")


def oversight_metrics(store: VerdictStore, cfg: OversightConfig) -> OversightMetrics:
    """Measure every level and the chain from the store's current state."""
    routing = store.routing()
    human = store.current()
    ai = store.all_ai_verdicts()
    items = {it.id: it for it in store.items()}
    n = len(routing)
    levels = []
    for lv in cfg.ai_levels:
        right = total = abstained = fired = 0
        seen: list[str] = []
        for iid, r in routing.items():
            if any(x.endswith(f":{lv.id}") or f"/{lv.id}" in x for x in r.reasons):
                fired += 1
            if iid not in human:
                continue
            v = next((x for x in ai.get(iid, []) if x.level == lv.id), None)
            if v is None or v.label is None:
                abstained += 1
                continue
            total += 1
            right += v.label == human[iid].label
            seen.append(str(human[iid].label))
        accuracy = proportion(right, total)
        levels.append(
            LevelMetrics(
                level=lv.id,
                kind=lv.kind,
                accuracy=accuracy,
                abstained=abstained,
                escalation_rate=proportion(fired, n),
                validation=_level_validation(accuracy, seen),
            )
        )
    reviewed = [iid for iid in human if iid in routing]
    overridden = sum(human[i].label != items[i].ai_label for i in reviewed)
    spots = [i for i in reviewed if routing[i].spot_check]
    spot_wrong = sum(human[i].label != routing[i].final_label for i in spots)
    unseen = sum(1 for i, r in routing.items() if not r.escalated and i not in human)
    err = proportion(spot_wrong, len(spots))
    return OversightMetrics(
        config=cfg.label(),
        items=n,
        reviewed=len(reviewed),
        escalation_rate=proportion(sum(r.escalated for r in routing.values()), n),
        override_rate=proportion(overridden, len(reviewed)),
        levels=levels,
        unseen_error_rate=err,
        unseen_items=unseen,
        unseen_errors=None if err.ci95 is None else (err.ci95[0] * unseen, err.ci95[1] * unseen),
    )
