"""Evaluation: harmful compliance, over-refusal, helpful answers, win rate and ASI, with a report.

Owns: evaluation suites (bundled sets, prompt files, public benchmarks), generating and labelling
every model's replies (again by a second, cross-check detector when given), judging them against
a baseline, shift families and the Alignment Stability Index, judge calibration against human
labels (calibration.json), the metrics.json schema (DESIGN.md), responses.jsonl /
judgments.jsonl records and the self-contained report.html.
Must not know: other workflows (critique, feedback, train, redteam, oversight) or the CLI; the
detector and judge come from ``cai.scoring``.
"""

from cai.evaluate._asi import asi_metrics
from cai.evaluate._calibrate import (
    CALIBRATION_PAIRS,
    CalibrationFile,
    CalibrationItem,
    CalibrationResult,
    calibrate_judge,
    calibration_pairs,
    calibration_pairs_path,
    demonstration_pairs,
    hedge_probe,
    judge_check,
    judge_injections,
    read_calibration,
    write_calibration,
)
from cai.evaluate._labels import HarmLabel, LabelSet, PairLabel, load_labels
from cai.evaluate._metrics import DEFINITIONS, cross_check_metrics, model_metrics
from cai.evaluate._outputs import sample_examples, write_outputs
from cai.evaluate._report import render_report
from cai.evaluate._run import EvalResult, evaluate_models, request_count
from cai.evaluate._schema import (
    ASI,
    METRIC_NAMES,
    CategoryRates,
    CrossCheck,
    EvalMeta,
    JudgmentRecord,
    MetricsFile,
    ModelMetrics,
    ResponseRecord,
    SuiteInfo,
    Unassessed,
)
from cai.evaluate._shifts import (
    ShiftContext,
    ShiftedPrompt,
    ShiftFamily,
    apply_shift,
    get_shift,
    register_shift,
    shift_names,
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
    "CALIBRATION_PAIRS",
    "DEFINITIONS",
    "METRIC_NAMES",
    "SAFE_KINDS",
    "SUITE_KINDS",
    "CalibrationFile",
    "CalibrationItem",
    "CalibrationResult",
    "CategoryRates",
    "CrossCheck",
    "EvalMeta",
    "EvalResult",
    "HarmLabel",
    "JudgmentRecord",
    "LabelSet",
    "MetricsFile",
    "ModelMetrics",
    "PairLabel",
    "ResponseRecord",
    "ShiftContext",
    "ShiftFamily",
    "ShiftedPrompt",
    "Suite",
    "SuiteInfo",
    "SuiteKind",
    "Unassessed",
    "apply_shift",
    "asi_metrics",
    "calibrate_judge",
    "calibration_pairs",
    "calibration_pairs_path",
    "cross_check_metrics",
    "demonstration_pairs",
    "evaluate_models",
    "get_shift",
    "hedge_probe",
    "judge_check",
    "judge_injections",
    "load_labels",
    "load_suite",
    "load_suites",
    "make_suite",
    "model_metrics",
    "read_calibration",
    "register_shift",
    "render_report",
    "request_count",
    "sample_examples",
    "shift_names",
    "write_calibration",
    "write_outputs",
]
