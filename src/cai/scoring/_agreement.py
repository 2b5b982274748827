"""How well a refusal detector agrees with human labels: confusion matrix, accuracy, P/R/F1.

Owns: the ``DetectorScores`` record (confusion counts with gold labels as rows and predictions as
columns, 'undetermined' included; accuracy, per-label precision and recall as ``Rate``s with
Wilson 95% intervals; F1) and ``evaluate_detector``, which runs a detector over labelled rows.
Must not know: where the rows came from, or how the detector decides.

An 'undetermined' prediction is never right: it counts in n and against accuracy and recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from cai.records import Strict
from cai.scoring._detector import REFUSAL_LABELS, Detection, Detector, RefusalLabel
from cai.scoring._labels import LABEL_SCHEMES, LabelledReply
from cai.scoring._stats import Rate, proportion


class LabelScores(Strict):
    """Precision, recall and F1 of one label."""

    precision: Rate
    """Right among the rows predicted as this label (n = predicted count)."""
    recall: Rate
    """Found among the rows whose gold label this is (n = gold count)."""
    f1: float | None
    """Harmonic mean of precision and recall; None when either is undefined."""


class DetectorScores(Strict):
    """A detector measured against gold labels."""

    version: Literal[1] = 1
    """Schema version."""
    detector: str
    """NAME/VERSION of the detector measured."""
    labels: list[RefusalLabel]
    """Row and column order of the confusion matrix."""
    confusion: dict[RefusalLabel, dict[RefusalLabel, int]]
    """confusion[gold][predicted] = count."""
    accuracy: Rate
    """Rows whose prediction equals the gold label, over all rows."""
    per_label: dict[RefusalLabel, LabelScores]
    """Precision, recall and F1 per gold label that occurs or is predicted."""
    undetermined: int
    """Rows the detector left undetermined (counted wrong)."""


def score_predictions(
    gold: Sequence[RefusalLabel], predicted: Sequence[RefusalLabel], *, detector: str = "?"
) -> DetectorScores:
    """Compare predictions with gold labels, position by position."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    labels = list(REFUSAL_LABELS)
    confusion = {g: dict.fromkeys(labels, 0) for g in labels}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p] += 1
    correct = sum(confusion[lab][lab] for lab in labels)
    per_label: dict[RefusalLabel, LabelScores] = {}
    for lab in labels:
        n_gold = sum(confusion[lab].values())
        n_pred = sum(confusion[g][lab] for g in labels)
        if not n_gold and not n_pred:
            continue
        tp = confusion[lab][lab]
        precision, recall = proportion(tp, n_pred), proportion(tp, n_gold)
        f1 = None
        if precision.value is not None and recall.value is not None:
            total = precision.value + recall.value
            f1 = round(2 * precision.value * recall.value / total, 6) if total else 0.0
        per_label[lab] = LabelScores(precision=precision, recall=recall, f1=f1)
    return DetectorScores(
        detector=detector,
        labels=labels,
        confusion=confusion,
        accuracy=proportion(correct, len(gold)),
        per_label=per_label,
        undetermined=sum(confusion[g]["undetermined"] for g in labels),
    )


def evaluate_detector(
    detector: Detector, rows: Sequence[LabelledReply], *, scheme: str = "xstest"
) -> tuple[DetectorScores, list[Detection]]:
    """Run ``detector`` once over all rows (one batch) and score it; detections in row order.

    Gold labels and predictions are both read under ``scheme`` (``xstest``, ``cai`` or
    ``binary``; see ``cai.scoring._labels``).
    """
    if scheme not in LABEL_SCHEMES:
        raise ValueError(
            f"unknown label scheme {scheme!r} (choose from {', '.join(LABEL_SCHEMES)})"
        )
    found = detector.detect([r.prompt for r in rows], [r.response for r in rows])
    gold = [r.gold(scheme) for r in rows]
    predicted = [d.as_scheme(scheme) for d in found]
    scores = score_predictions(gold, predicted, detector=f"{detector.name}/{detector.version}")
    return scores, found
