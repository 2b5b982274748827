"""RLAIF: label preference pairs with AI feedback under the constitution's principles.

Owns: sampling response pairs from a policy and reading pair files, asking feedback models which
reply better meets a sampled principle (in both presentation orders, optionally after a chain of
thought, optionally as an ensemble of principles and models), the tie rule, the position-bias
and agreement report, and the resumable stages writing ``pairs.jsonl`` and
``preferences.jsonl`` (plus ``judgements.jsonl``, ``ties.jsonl`` and ``feedback_summary.json``).
Must not know: other workflows (critique, training, evaluation) or the CLI.
"""

from cai.feedback._label import (
    FeedbackConfig,
    FeedbackResult,
    choose_principles,
    is_identical,
    label_preferences,
)
from cai.feedback._pairs import PairsSummary, load_pairs, run_pairs_stage, sample_pairs
from cai.feedback._records import Comparison, PairJudgement, decide
from cai.feedback._stage import FILES, FeedbackSummary, run_feedback_stage
from cai.feedback._stats import FeedbackStats, describe_rate, feedback_stats
from cai.feedback._templates import compare_template

__all__ = [
    "FILES",
    "Comparison",
    "FeedbackConfig",
    "FeedbackResult",
    "FeedbackStats",
    "FeedbackSummary",
    "PairJudgement",
    "PairsSummary",
    "choose_principles",
    "compare_template",
    "decide",
    "describe_rate",
    "feedback_stats",
    "is_identical",
    "label_preferences",
    "load_pairs",
    "run_feedback_stage",
    "run_pairs_stage",
    "sample_pairs",
]
