"""The evaluation's records on disk: responses.jsonl, judgments.jsonl and metrics.json.

Owns: the strict, versioned pydantic models of every evaluation output, including the layout of
metrics.json that DESIGN.md fixes: one top-level key per evaluated model plus ``meta``.
Must not know: how the numbers are computed or rendered.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from cai.evaluate._suites import SuiteKind
from cai.records import FinishReason, SamplingParams, Strict
from cai.scoring import Detection, JudgeResult, Rate, RefusalLabel, Validation

METRIC_NAMES = ("harmful_compliance", "over_refusal", "helpful_answered", "helpfulness_win_rate")
"""The per-model metrics with an entry under ``unassessed``."""


class ResponseRecord(Strict):
    """One model's reply to one evaluation prompt, with its refusal label."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """MODEL/SUITE/PROMPT_ID."""
    model: str
    """Name the model is evaluated under (a metrics.json key)."""
    spec: str
    """Model spec that produced the reply."""
    suite: str
    """Suite name."""
    kind: SuiteKind
    """Suite kind: harmful, borderline or helpful."""
    prompt_id: str
    """Prompt id within the suite."""
    category: str
    """Prompt category (harm category or topic)."""
    prompt: str
    """The user request."""
    response: str
    """The reply ('' when generation failed)."""
    finish_reason: FinishReason
    """How generation ended; 'error' means the reply is unassessed."""
    error: str | None = None
    """Backend error text when generation failed."""
    detection: Detection | None
    """The refusal detector's verdict; None when generation failed."""
    shift: str | None = None
    """Shift family applied to the prompt (ASI); None in distribution."""
    variant: str | None = None
    """Which variant of the shift family (template, encoding, language, shift model)."""
    cross_check_label: RefusalLabel | None = None
    """The second (cross-check) detector's label; None when there was none or generation
    failed."""


class JudgmentRecord(Strict):
    """The judge's comparison of a model's reply with the baseline's on one helpful prompt."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """MODEL/SUITE/PROMPT_ID."""
    model: str
    """The model compared (x)."""
    baseline: str
    """The baseline it is compared against (y)."""
    suite: str
    """Suite name."""
    prompt_id: str
    """Prompt id within the suite."""
    category: str
    """Prompt category."""
    result: JudgeResult
    """P(model better) per order and averaged; None values mean unassessed."""


class Unassessed(Strict):
    """Items left out of a metric's n, by cause. They are never counted as safe or as wins."""

    errored: int = 0
    """A model call failed (the reply's generation, or the judge's scoring)."""
    undetermined: int = 0
    """The detector could not label the reply (empty, too short, garbage)."""


class CategoryRates(Strict):
    """The refusal metrics per prompt category."""

    harmful_compliance: dict[str, Rate]
    """Harmful compliance per harm category."""
    over_refusal: dict[str, Rate]
    """Over-refusal per safe-prompt category."""
    helpfulness_win_rate: dict[str, Rate] = Field(default_factory=dict)
    """Win rate against the baseline per helpful-prompt category (bootstrap interval); empty
    when no win rate was computed."""


class ASI(Strict):
    """Alignment Stability Index (DESIGN.md): mean over shift families of min(1, S_f / S_0).

    S_f is the safe rate (not full compliance) on harmful prompts under shift family f, S_0 the
    safe rate on the same prompts in distribution. A family whose S_0 is 0 has ratio 1: there
    is no safety to lose.
    """

    value: float | None = None
    """The index; None when no shifts were evaluated (``cai eval --asi``)."""
    n: int = 0
    """Harmful prompts (in distribution) the index is over; bootstrap resamples these."""
    ci95: tuple[float, float] | None = None
    """Percentile bootstrap 95% interval (prompts resampled, all families together)."""
    per_shift: dict[str, Rate] = Field(default_factory=dict)
    """S_f: safe rate on harmful prompts under each shift family (Wilson interval)."""
    s0: Rate | None = None
    """S_0: safe rate on the same harmful prompts in distribution (Wilson interval)."""
    ratio: dict[str, Rate] = Field(default_factory=dict)
    """min(1, S_f / S_0) per family (bootstrap interval)."""
    worst_family: str | None = None
    """The family with the lowest ratio."""
    over_refusal: dict[str, Rate] = Field(default_factory=dict)
    """Over-refusal on the safe suites under each shift family, shown beside the index so that
    refusing everything is not rewarded."""
    unassessed: dict[str, Unassessed] = Field(default_factory=dict)
    """Shifted harmful replies left out per family (failed shift or reply, or undetermined)."""


class CrossCheck(Strict):
    """The refusal metrics again, from a second detector's labels of the same replies."""

    detector: str
    """The second detector's registry name."""
    version: str
    """Its version."""
    harmful_compliance: Rate
    """As ``ModelMetrics.harmful_compliance``, by the second detector."""
    over_refusal: Rate
    """As ``ModelMetrics.over_refusal``, by the second detector."""
    helpful_answered: Rate | None
    """As ``ModelMetrics.helpful_answered``, by the second detector."""
    agreement: Rate
    """Share of the replies (generation succeeded, in distribution) both detectors give the
    same label (Wilson interval)."""
    unassessed: dict[str, Unassessed] = Field(default_factory=dict)
    """Items the second detector's metrics leave out, keyed by metric name."""


class ModelMetrics(Strict):
    """Every metric of one evaluated model."""

    harmful_compliance: Rate
    """Share of assessed harmful prompts answered with full compliance (lower is better)."""
    over_refusal: Rate
    """Share of assessed safe prompts refused fully or partly (lower is better)."""
    helpful_answered: Rate | None = None
    """Share of helpful prompts whose reply is full compliance and not degenerate (empty,
    looping or only the prompt again; higher is better); None (null) without a helpful suite."""
    helpfulness_win_rate: Rate | None
    """Mean judge P(this model better than the baseline) on helpful prompts, both orders, ties
    half; None (null) when not computed: the baseline itself, no judge, or no helpful suite."""
    helpfulness_win_rate_validation: Validation | None = None
    """Whether the judge behind the win rate is shown to agree with people (its calibration
    kappa interval lies above 0); a win rate with ``validated: false`` is not a result."""
    asi: ASI
    """Alignment Stability Index (value null unless ``cai eval --asi``)."""
    per_category: CategoryRates
    """harmful_compliance and over_refusal per category."""
    unassessed: dict[str, Unassessed]
    """Items left out of each metric's n, keyed by metric name."""
    labels: dict[str, dict[str, int]]
    """Detector label counts per suite kind (errored replies under 'errored')."""
    cross_check: CrossCheck | None = None
    """The same metrics by a second detector; None when none was given."""


class SuiteInfo(Strict):
    """Where a suite's prompts came from."""

    kind: SuiteKind
    """harmful, borderline or helpful."""
    source: str
    """builtin:NAME or the file given."""
    split: str | None
    """The split used for a bundled set; None for a user file (all its prompts)."""
    n: int
    """Prompts evaluated."""
    sha256: str
    """Digest of the prompts (id, text, category as canonical JSON lines)."""


class EvalMeta(Strict):
    """How the metrics were produced."""

    version: Literal[1] = 1
    """Schema version of metrics.json."""
    created: str
    """UTC time the evaluation finished (ISO 8601)."""
    models: dict[str, str]
    """Evaluated model name -> model spec (the policy role)."""
    roles: dict[str, str]
    """Other roles -> model spec (judge)."""
    baseline: str | None
    """The model the helpfulness win rate compares against."""
    detector: dict[str, str]
    """Refusal detector name and version."""
    cross_check: dict[str, str] | None = None
    """The second (cross-check) detector's name and version; None when none was given."""
    judge_template: str | None
    """Judge prompt template NAME/REVISION."""
    generation: SamplingParams
    """Sampling settings of every reply."""
    seeds: dict[str, int]
    """Seeds: generation, bootstrap, example sampling."""
    suites: dict[str, SuiteInfo]
    """Suite name -> provenance and digest."""
    intervals: dict[str, str]
    """Interval method per metric."""
    durations: dict[str, float]
    """Seconds per step (generate:MODEL, judge:MODEL, total)."""
    notes: list[str]
    """Definitions and caveats a reader needs."""
    shifts: dict[str, str] = Field(default_factory=dict)
    """ASI shift families evaluated -> description; empty without --asi."""
    instruments: dict[str, Validation] = Field(default_factory=dict)
    """Each instrument behind these numbers (detector, judge) and whether it is validated."""
    shift_texts: str | None = None
    """Shift texts NAME/REVISION (``data/shifts.yaml``) when shifts were evaluated."""


class MetricsFile(Strict):
    """metrics.json: on disk ``{MODEL: ModelMetrics, ..., "meta": EvalMeta}`` (DESIGN.md).

    In Python the models sit under ``models``; serialising flattens them to the top level and
    validating accepts the flat layout, so ``MetricsFile.model_validate_json`` reads the file.
    """

    models: dict[str, ModelMetrics]
    """Evaluated model name -> metrics. No model may be named 'meta'."""
    meta: EvalMeta
    """Provenance."""

    @model_validator(mode="before")
    @classmethod
    def _unflatten(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        nested = isinstance(data.get("models"), dict) and "harmful_compliance" not in data["models"]
        if nested and set(data) <= {"models", "meta"}:
            return data
        return {"models": {k: v for k, v in data.items() if k != "meta"}, "meta": data.get("meta")}

    @model_validator(mode="after")
    def _no_meta_model(self) -> MetricsFile:
        if "meta" in self.models:
            raise ValueError("no model may be named 'meta' (it is the provenance key)")
        return self

    @model_serializer(mode="wrap")
    def _flatten(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {**data["models"], "meta": data["meta"]}
