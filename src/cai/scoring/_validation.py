"""Whether an instrument is shown to agree with people: the rule, and the run's calibration.json.

Owns: ``Validation`` (validated or not, and why), the rule that turns a judge's calibration
kappa into one (``judge_validation``), the record of one calibrated judge in a run
(``JudgeCheck``) and the run-level ``calibration.json`` (``RunCalibration``) with its reader.
Must not know: how calibration asks a judge (that is the evaluate workflow) or how a number that
rests on a judge is computed.

The rule: a judge is validated when the lower end of the 95% interval of its Cohen's kappa with
the labels is above 0. A judge never calibrated, calibrated on nothing, or whose interval
includes 0 is not validated, and every number it produces says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from cai.errors import InputError
from cai.records import Strict, digest
from cai.scoring._detector import Detector
from cai.scoring._stats import Rate

RUN_CALIBRATION = "calibration.json"
"""The run-level calibration summary, at the top of a run directory."""


class Validation(Strict):
    """Is the instrument behind a number shown to agree with people?"""

    validated: bool
    """True only when its calibration shows agreement beyond chance."""
    reason: str
    """Why (the kappa and its interval, or what is missing)."""


NOT_CALIBRATED = Validation(validated=False, reason="judge not validated: never calibrated")


def judge_validation(kappa: Rate | None, where: str = "the calibration set") -> Validation:
    """``validated`` when the 95% interval of ``kappa`` lies above 0."""
    if kappa is None:
        return NOT_CALIBRATED
    if kappa.value is None or kappa.ci95 is None:
        return Validation(
            validated=False, reason=f"judge not validated: no assessed items on {where}"
        )
    lo, _ = kappa.ci95
    text = f"kappa {kappa.fmt()} on {where}"
    if lo > 0:
        return Validation(validated=True, reason=text)
    return Validation(
        validated=False, reason=f"judge not validated: {text}; the interval includes 0"
    )


class JudgeCheck(Strict):
    """One feedback or judge model of a run, calibrated before the run used it."""

    role: str
    """``feedback`` (with its index when a run has several) or ``judge``."""
    spec: str
    """Model spec."""
    comparison: Literal["compare", "helpfulness"]
    """The question asked: the constitutional comparison or the helpfulness judge's."""
    file: str
    """Its full calibration.json, relative to the run directory."""
    accuracy: Rate
    """Agreement with the labels (order-averaged verdict)."""
    kappa: Rate
    """Cohen's kappa with the labels (bootstrap interval)."""
    position_bias: Rate
    """Share of orderings won by slot A; 0.5 is unbiased."""
    per_category: dict[str, Rate] = Field(default_factory=dict)
    """Accuracy per kind of calibration pair."""
    unassessed: int = 0
    """Items whose requests failed."""
    seconds: float
    """Time the calibration took."""
    validation: Validation
    """``judge_validation`` of ``kappa``."""


class RunCalibration(Strict):
    """calibration.json of a run: every feedback and judge model, calibrated before use."""

    version: Literal[1] = 1
    """Schema version."""
    created: str
    """UTC time written (ISO 8601)."""
    labels: str
    """The calibration set: path and SHA-256 prefix."""
    n: int
    """Pairs asked of each judge (both orders each)."""
    judges: list[JudgeCheck]
    """One entry per (role, spec)."""
    detector: Validation | None = None
    """The refusal detector on the bundled labelled set's test split (binary kappa rule)."""
    detector_accuracy: dict[str, Rate] = Field(default_factory=dict)
    """The detector's accuracy there, per label scheme (xstest, cai, binary)."""
    rule: str = (
        "validated when the lower end of the kappa 95% interval is above 0; numbers from a "
        "judge that is not validated are marked, never reported as plain results"
    )
    """How ``validation`` is decided."""

    def check(self, role: str) -> JudgeCheck | None:
        """The entry of ``role`` (``judge``, ``feedback`` or ``feedback[1]``...)."""
        for j in self.judges:
            if j.role == role:
                return j
        return None


class DetectorCheck(Strict):
    """A detector measured on the bundled labelled set's test split (cached per version)."""

    version: Literal[1] = 1
    """Schema version."""
    detector: str
    """NAME/VERSION."""
    validation: Validation
    """The kappa rule applied to 'refused' (full or partial) against the labels."""
    accuracy: dict[str, Rate]
    """Accuracy per label scheme."""


BUNDLED_CHECKS = "detector_checks.json"
"""Shipped checks of the shipped detectors (``bench/detector_accuracy.py --refit-hybrid``)."""


def _bundled_checks() -> dict[str, DetectorCheck]:
    from importlib import resources

    path = resources.files("cai.scoring") / "data" / BUNDLED_CHECKS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: DetectorCheck.model_validate(v) for k, v in data.items()}


def measure_detector(detector: Detector) -> DetectorCheck:
    """Run ``detector`` over the bundled test split (the hybrid embeds 431 replies: ~1 min)."""
    from cai.scoring._agreement import score_predictions
    from cai.scoring._labels import LABEL_SCHEMES, load_labels
    from cai.scoring._stats import cohen_kappa

    rows = load_labels(split="test")
    found = detector.detect([r.prompt for r in rows], [r.response for r in rows])
    name = f"{detector.name}/{detector.version}"
    acc: dict[str, Rate] = {
        scheme: score_predictions(
            [r.gold(scheme) for r in rows], [d.as_scheme(scheme) for d in found], detector=name
        ).accuracy
        for scheme in LABEL_SCHEMES
    }
    refused = ("full_refusal", "partial_refusal")
    kappa = cohen_kappa([d.label in refused for d in found], [r.label in refused for r in rows])
    v = judge_validation(kappa, f"the bundled labelled test split (n={len(rows)})")
    text = v.reason.replace("judge not validated", "detector not validated")
    text += f"; binary accuracy {acc['binary'].fmt()}, xstest {acc['xstest'].fmt()}"
    return DetectorCheck(
        detector=name, validation=Validation(validated=v.validated, reason=f"{name}: {text}"),
        accuracy=acc,
    )  # fmt: skip


def detector_validation(
    detector: Detector, cache_dir: str | Path | None = None
) -> tuple[Validation, dict[str, Rate]]:
    """``detector`` on the bundled labelled set's test split: validated when the kappa of
    'refused' (full or partial) against the labels has a 95% interval above 0; accuracy under
    each scheme beside it. Read from the shipped checks or the cache when this detector version
    was measured before, else measured now and cached."""
    from cai.backends._embedded import cache_root

    name = f"{detector.name}/{detector.version}"
    check = _bundled_checks().get(name)
    cached = cache_root(cache_dir) / "detectors" / f"check-{digest([name], length=24)}.json"
    if check is None and cached.is_file():
        try:
            check = DetectorCheck.model_validate_json(cached.read_text(encoding="utf-8"))
        except ValidationError:
            check = None  # a torn or foreign file: measure again
    if check is None or check.detector != name:
        check = measure_detector(detector)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(check.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, cached)
    return check.validation, check.accuracy


def read_run_calibration(run_dir: str | Path) -> RunCalibration | None:
    """The run's calibration.json; None when there is none or it is another kind of file
    (``cai calibrate`` writes a single judge's calibration under the same name)."""
    p = Path(run_dir) / RUN_CALIBRATION
    if not p.is_file():
        return None
    text = p.read_text(encoding="utf-8")
    if '"judges"' not in text:
        return None
    try:
        return RunCalibration.model_validate_json(text)
    except ValidationError as exc:
        raise InputError(f"{p}: not a run calibration file ({exc.errors()[0]['msg']})") from None
