"""Evaluation: harmful compliance, over-refusal and helpfulness win rate, with a report.

Owns: evaluation suites, generating and labelling every model's replies, judging them against a
baseline, the metrics.json schema (DESIGN.md), responses.jsonl / judgments.jsonl records and the
self-contained report.html.
Must not know: other workflows (critique, feedback, train, redteam, oversight) or the CLI; the
detector and judge come from ``cai.scoring``.
"""

from cai.evaluate._metrics import DEFINITIONS, model_metrics
from cai.evaluate._outputs import sample_examples, write_outputs
from cai.evaluate._report import render_report
from cai.evaluate._run import EvalResult, evaluate_models
from cai.evaluate._schema import (
    ASI,
    METRIC_NAMES,
    CategoryRates,
    EvalMeta,
    JudgmentRecord,
    MetricsFile,
    ModelMetrics,
    ResponseRecord,
    SuiteInfo,
    Unassessed,
)
from cai.evaluate._suites import (
    SAFE_KINDS,
    SUITE_KINDS,
    Suite,
    SuiteKind,
    load_suite,
    load_suites,
    make_suite,
)

__all__ = [
    "ASI",
    "DEFINITIONS",
    "METRIC_NAMES",
    "SAFE_KINDS",
    "SUITE_KINDS",
    "CategoryRates",
    "EvalMeta",
    "EvalResult",
    "JudgmentRecord",
    "MetricsFile",
    "ModelMetrics",
    "ResponseRecord",
    "Suite",
    "SuiteInfo",
    "SuiteKind",
    "Unassessed",
    "evaluate_models",
    "load_suite",
    "load_suites",
    "make_suite",
    "model_metrics",
    "render_report",
    "sample_examples",
    "write_outputs",
]
