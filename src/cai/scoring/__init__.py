"""Scoring: refusal detectors, pairwise judges and interval statistics shared by the workflows.

Owns: the refusal label set and ``Detector`` protocol with its registry (``rules`` built in),
the rule-based detector and its phrase lists (``data/refusal_patterns.yaml``), the pairwise
helpfulness judge and its template (``templates/helpfulness_judge.yaml``), and the ``Rate``
record with Wilson and bootstrap intervals.
Must not know: any workflow (evaluate, feedback, redteam, oversight), run directories or the CLI.
"""

from cai.scoring._detector import (
    REFUSAL_LABELS,
    Detection,
    Detector,
    RefusalLabel,
    detector_names,
    get_detector,
    register_detector,
)
from cai.scoring._judge import JudgeResult, helpfulness_template, judge_pairs, pairwise_judge
from cai.scoring._patterns import RefusalPatterns
from cai.scoring._rules import RuleDetector
from cai.scoring._stats import Rate, bootstrap_ci, mean_rate, proportion, wilson_interval

__all__ = [
    "REFUSAL_LABELS",
    "Detection",
    "Detector",
    "JudgeResult",
    "Rate",
    "RefusalLabel",
    "RefusalPatterns",
    "RuleDetector",
    "bootstrap_ci",
    "detector_names",
    "get_detector",
    "helpfulness_template",
    "judge_pairs",
    "mean_rate",
    "pairwise_judge",
    "proportion",
    "register_detector",
    "wilson_interval",
]
