"""How far a feedback model can be trusted: position bias, order consistency, ensemble agreement.

Owns: the statistics every feedback run reports, computed from judgement records.
Must not know: models, files, or how the judgements were made.

Small judges are often driven by the slot, not the content (a 135M model picked option A in
20 of 20 comparisons), so these numbers are reported on every run, not on request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

from cai.feedback._records import Comparison, PairJudgement
from cai.records import Strict
from cai.scoring import Rate, proportion


class FeedbackStats(Strict):
    """Trust statistics over a set of judged pairs."""

    version: Literal[1] = 1
    """Schema version."""
    judged: int
    """Pairs judged (preferred and ties)."""
    comparisons: int
    """(pair, principle, model) comparisons, each asked in two orders."""
    position_bias: Rate
    """Share of orderings won by slot A (n = 2 x comparisons); 0.5 is unbiased."""
    position_bias_by_model: dict[str, Rate]
    """Slot-A share per feedback model (only with several models)."""
    order_consistency: Rate
    """Share of pairs whose two orders (each the ensemble mean) prefer the same reply."""
    principle_agreement: dict[str, Rate]
    """Per principle: share of its comparisons on the same side as the pair's soft label (only
    for pairs judged under several principles)."""
    model_agreement: dict[str, Rate]
    """Per feedback model: share of its comparisons on the same side as the pair's soft label
    (only for pairs judged by several models)."""

    def biased(self) -> bool:
        """True when the 95% interval of the slot-A share excludes 0.5."""
        ci = self.position_bias.ci95
        return ci is not None and not ci[0] <= 0.5 <= ci[1]


def _same_side(x: float, y: float) -> bool:
    return (x - 0.5) * (y - 0.5) > 0


def _rates(groups: dict[str, list[float]]) -> dict[str, Rate]:
    return {k: proportion(sum(v), len(v)) for k, v in sorted(groups.items())}


def _agreement(
    judgements: Sequence[PairJudgement], key: Literal["principle_id", "model"]
) -> dict[str, Rate]:
    groups: dict[str, list[float]] = defaultdict(list)
    for j in judgements:
        if len({getattr(c, key) for c in j.comparisons}) < 2:
            continue
        for c in j.comparisons:
            groups[getattr(c, key)].append(float(_same_side(c.p_a, j.soft_label_a)))
    return _rates(groups)


def _slot_a(comparisons: Iterable[Comparison]) -> Rate:
    wins = n = 0.0
    for c in comparisons:
        wins += c.slot_a_wins()
        n += 2
    return proportion(wins, int(n))


def feedback_stats(judgements: Sequence[PairJudgement]) -> FeedbackStats:
    """Position bias, order consistency and ensemble agreement over ``judgements``."""
    comparisons = [c for j in judgements for c in j.comparisons]
    models = sorted({c.model for c in comparisons})
    by_model = (
        {m: _slot_a(c for c in comparisons if c.model == m) for m in models}
        if len(models) > 1
        else {}
    )
    consistent = sum(_same_side(j.p_first, j.p_second) for j in judgements)
    return FeedbackStats(
        judged=len(judgements),
        comparisons=len(comparisons),
        position_bias=_slot_a(comparisons),
        position_bias_by_model=by_model,
        order_consistency=proportion(consistent, len(judgements)),
        principle_agreement=_agreement(judgements, "principle_id"),
        model_agreement=_agreement(judgements, "model"),
    )


def describe_rate(rate: Rate) -> str:
    """'0.73 (n=40, 95% CI 0.58-0.84)', or 'no data'."""
    if rate.value is None or rate.ci95 is None:
        return "no data"
    lo, hi = rate.ci95
    return f"{rate.value:.2f} (n={rate.n}, 95% CI {lo:.2f}-{hi:.2f})"
