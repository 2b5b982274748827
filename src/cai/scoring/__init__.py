"""Scoring: refusal detectors, pairwise judges and interval statistics shared by the workflows.

Owns: the refusal label set and ``Detector`` protocol with its registry (``rules``, ``llm`` and
``embedding`` built in), the rule-based detector and its phrase lists
(``data/refusal_patterns.yaml``), the LLM-rubric and embedding-classifier detectors, the
human-labelled set (``data/refusal_labels.csv``, XSTest label scheme) with its loader and the
detector-agreement scores (confusion matrix, accuracy, precision, recall), the pairwise
helpfulness judge and its template (``templates/helpfulness_judge.yaml``), the constitutional
comparison shared by feedback labelling and judge calibration (``templates/compare.yaml``), and
the ``Rate`` record with Wilson and bootstrap intervals and Cohen's kappa, and the pure-text
checks for degenerate replies (empty, looping, echoing the prompt), and the detector injection
probe (``data/detector_injections.yaml``: does a note inside a reply change its label?).
Must not know: any workflow (evaluate, feedback, redteam, oversight), run directories or the CLI.
"""

from cai.scoring._agreement import (
    DetectorScores,
    LabelScores,
    evaluate_detector,
    score_predictions,
)
from cai.scoring._compare import (
    LETTERS,
    answer_request,
    compare_messages,
    compare_template,
    comparison_chat,
    comparison_pattern,
    p_slot_a,
    reasoning_request,
    reward_probe_template,
    sigmoid,
)
from cai.scoring._degenerate import (
    REPLY_REASONS,
    degenerate_reply,
    normalized,
    repeats,
    similar,
    word_ngrams,
)
from cai.scoring._detector import (
    DEFAULT_DETECTOR,
    REFUSAL_LABELS,
    Detection,
    Detector,
    RefusalLabel,
    detector_names,
    get_detector,
    register_detector,
)
from cai.scoring._embedding import EmbeddingDetector
from cai.scoring._hybrid import HybridDetector
from cai.scoring._injection import (
    DetectorInjectionProbe,
    detector_injection_probe,
    detector_injections,
)
from cai.scoring._judge import (
    JudgeResult,
    helpfulness_template,
    judge_pairs,
    pairwise_judge,
    score_each,
)
from cai.scoring._labels import (
    BLIND_LABELS,
    BUNDLED_LABELS,
    LABEL_SCHEMES,
    LABEL_SPLITS,
    TO_XSTEST,
    XSTEST_LABELS,
    LabelledReply,
    LabelSplit,
    bundled_labels_path,
    label_split,
    load_labels,
    parse_label,
    to_scheme,
)
from cai.scoring._llm import LLMDetector, refusal_template
from cai.scoring._patterns import RefusalPatterns
from cai.scoring._rules import RuleDetector
from cai.scoring._stats import (
    Rate,
    bootstrap_ci,
    cohen_kappa,
    decision_rate,
    mean_rate,
    proportion,
    wilson_interval,
)
from cai.scoring._validation import (
    NOT_CALIBRATED,
    RUN_CALIBRATION,
    JudgeCheck,
    RunCalibration,
    Validation,
    detector_validation,
    judge_validation,
    read_run_calibration,
)

__all__ = [
    "BLIND_LABELS",
    "BUNDLED_LABELS",
    "DEFAULT_DETECTOR",
    "LABEL_SCHEMES",
    "LABEL_SPLITS",
    "LETTERS",
    "NOT_CALIBRATED",
    "REFUSAL_LABELS",
    "REPLY_REASONS",
    "RUN_CALIBRATION",
    "TO_XSTEST",
    "XSTEST_LABELS",
    "Detection",
    "Detector",
    "DetectorInjectionProbe",
    "DetectorScores",
    "EmbeddingDetector",
    "HybridDetector",
    "JudgeCheck",
    "JudgeResult",
    "LLMDetector",
    "LabelScores",
    "LabelSplit",
    "LabelledReply",
    "Rate",
    "RefusalLabel",
    "RefusalPatterns",
    "RuleDetector",
    "RunCalibration",
    "Validation",
    "answer_request",
    "bootstrap_ci",
    "bundled_labels_path",
    "cohen_kappa",
    "compare_messages",
    "compare_template",
    "comparison_chat",
    "comparison_pattern",
    "decision_rate",
    "degenerate_reply",
    "detector_injection_probe",
    "detector_injections",
    "detector_names",
    "detector_validation",
    "evaluate_detector",
    "get_detector",
    "helpfulness_template",
    "judge_pairs",
    "judge_validation",
    "label_split",
    "load_labels",
    "mean_rate",
    "normalized",
    "p_slot_a",
    "pairwise_judge",
    "parse_label",
    "proportion",
    "read_run_calibration",
    "reasoning_request",
    "refusal_template",
    "register_detector",
    "repeats",
    "reward_probe_template",
    "score_each",
    "score_predictions",
    "sigmoid",
    "similar",
    "to_scheme",
    "wilson_interval",
    "word_ngrams",
]
