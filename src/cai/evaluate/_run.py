"""The evaluation run: generate with every model, label, judge, and compute metrics.

Owns: the order of model calls (one batched ``generate`` per suite per model, one ``detect`` per
suite per model and one more by the cross-check detector when given, one batched judge ``score``
call per compared model), the provenance in ``meta``, example sampling for the report, and
writing the output files.
Must not know: how backends batch or cache, how the detector or judge decide, or the CLI.

A failed reply is kept with finish_reason 'error' and counted as unassessed; nothing is retried
here (the CLI's response cache never stores errors, so rerunning retries exactly those calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cai.backends import Backend
from cai.errors import InputError
from cai.evaluate._asi import asi_metrics
from cai.evaluate._metrics import DEFINITIONS, INTERVALS, model_metrics
from cai.evaluate._schema import (
    EvalMeta,
    JudgmentRecord,
    MetricsFile,
    ResponseRecord,
    SuiteInfo,
)
from cai.evaluate._shifts import ShiftContext, ShiftedPrompt, apply_shift, get_shift, shift_texts
from cai.evaluate._suites import Suite
from cai.records import Generation, GenerationRequest, SamplingParams
from cai.scoring import (
    NOT_CALIBRATED,
    Detection,
    Detector,
    Validation,
    helpfulness_template,
    judge_pairs,
)

Progress = Callable[[int, int], None]
"""Called after each model call with (requests finished, tokens generated)."""


@dataclass(slots=True)
class EvalResult:
    """Everything one evaluation produced."""

    metrics: MetricsFile
    responses: list[ResponseRecord]
    judgments: list[JudgmentRecord]


def _check(models: Mapping[str, Backend], suites: Sequence[Suite]) -> None:
    if not models:
        raise InputError("give at least one model to evaluate")
    if "meta" in models:
        raise InputError("no model may be named 'meta' (metrics.json uses it for provenance)")
    if not suites:
        raise InputError("give at least one suite")
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise InputError(f"suite names must be unique, got {names}")


def _respond(
    name: str,
    backend: Backend,
    suite: Suite,
    detector: Detector,
    params: SamplingParams,
    on_progress: Progress | None,
    shifted: Sequence[ShiftedPrompt] | None = None,
    cross_check: Detector | None = None,
) -> list[ResponseRecord]:
    """Generate and label replies to a suite, or to its prompts under one shift family."""
    if shifted is None:
        texts = [p.text for p in suite.prompts]
        chats = [GenerationRequest.user(t) for t in texts]
    else:
        texts = [s.text for s in shifted]
        chats = [GenerationRequest(messages=s.messages) for s in shifted]
    failed_shift = {i for i, s in enumerate(shifted or ()) if s.error is not None}
    live = [i for i in range(len(chats)) if i not in failed_shift]
    got = backend.generate([chats[i] for i in live], params) if live else []
    if on_progress:
        on_progress(len(chats), sum(g.completion_tokens for g in got if not g.cached))
    gens: dict[int, Generation] = dict(zip(live, got, strict=True))
    for i in failed_shift:
        assert shifted is not None
        gens[i] = Generation(text="", finish_reason="error", error=shifted[i].error)
    ok = [i for i in live if gens[i].finish_reason != "error"]
    found = detector.detect([texts[i] for i in ok], [gens[i].text for i in ok])
    labels = dict(zip(ok, found, strict=True))
    second: dict[int, Detection] = {}
    if cross_check is not None:
        again = cross_check.detect([texts[i] for i in ok], [gens[i].text for i in ok])
        second = dict(zip(ok, again, strict=True))
    family = shifted[0].family if shifted else None
    where = suite.name if family is None else f"{suite.name}@{family}"
    return [
        ResponseRecord(
            id=f"{name}/{where}/{p.id}",
            model=name,
            spec=backend.spec,
            suite=suite.name,
            kind=suite.kind,
            prompt_id=p.id,
            category=p.category,
            prompt=texts[i],
            response=gens[i].text if gens[i].finish_reason != "error" else "",
            finish_reason=gens[i].finish_reason,
            error=gens[i].error if gens[i].finish_reason == "error" else None,
            detection=labels.get(i),
            shift=family,
            variant=shifted[i].variant if shifted else None,
            cross_check_label=second[i].label if i in second else None,
        )
        for i, p in enumerate(suite.prompts)
    ]


def _shift_suites(
    suites: Sequence[Suite], families: Sequence[str], ctx: ShiftContext
) -> dict[tuple[str, str], list[ShiftedPrompt]]:
    """Every suite's prompts under every family, computed once for all evaluated models."""
    return {(s.name, f): apply_shift(f, list(s.prompts), ctx) for f in families for s in suites}


def _judge(
    judge: Backend, name: str, baseline: str, mine: list[ResponseRecord], base: list[ResponseRecord]
) -> list[JudgmentRecord]:
    by_key = {(r.suite, r.prompt_id): r for r in base}
    pairs = [(r, by_key[r.suite, r.prompt_id]) for r in mine]
    results = judge_pairs(
        judge,
        [x.prompt for x, _ in pairs],
        [x.response if x.detection is not None else None for x, _ in pairs],
        [y.response if y.detection is not None else None for _, y in pairs],
    )
    return [
        JudgmentRecord(
            id=x.id,
            model=name,
            baseline=baseline,
            suite=x.suite,
            prompt_id=x.prompt_id,
            category=x.category,
            result=res,
        )
        for (x, _), res in zip(pairs, results, strict=True)
    ]


def request_count(
    models: Sequence[str],
    suites: Sequence[Suite],
    *,
    judge: bool,
    shifts: int = 0,
    baseline: str = "base",
) -> int:
    """The requests ``evaluate_models`` reports to ``on_progress``: every prompt per model and
    shift family, plus two judge orderings per helpful prompt of each model compared with the
    baseline."""
    n = sum(len(s.prompts) for s in suites)
    total = n * len(models) * (1 + shifts)
    helpful = sum(len(s.prompts) for s in suites if s.kind == "helpful")
    if judge and helpful and baseline in models:
        total += 2 * helpful * (len(models) - 1)
    return total


def evaluate_models(
    models: Mapping[str, Backend],
    suites: Sequence[Suite],
    detector: Detector,
    judge: Backend | None,
    params: SamplingParams,
    baseline: str = "base",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    on_progress: Progress | None = None,
    shifts: Sequence[str] = (),
    shift_model: Backend | None = None,
    judge_validation: Validation | None = None,
    detector_validation: Validation | None = None,
    cross_check: Detector | None = None,
) -> EvalResult:
    """Evaluate each named model on every suite; see ``cai.evaluate._metrics`` for definitions.

    ``shifts`` (family names, see ``cai.evaluate._shifts``) adds the Alignment Stability Index:
    every suite is shifted once (model-based families ask ``shift_model``, default the first
    model) and every model answers the shifted prompts too. ``judge_validation`` (default: not
    calibrated) is written next to every win rate; ``detector_validation`` into the meta.
    ``cross_check``, a second detector, labels every reply too (``cross_check_label``); each
    model's ``cross_check`` holds the metrics by its labels and its agreement with ``detector``.
    """
    _check(models, suites)
    families = [get_shift(f).name for f in dict.fromkeys(shifts)]
    start = time.perf_counter()
    durations: dict[str, float] = {}
    shifter = shift_model or next(iter(models.values()))
    uses_model = any(get_shift(f).needs_model for f in families)
    shifted: dict[tuple[str, str], list[ShiftedPrompt]] = {}
    if families:
        t = time.perf_counter()
        shifted = _shift_suites(suites, families, ShiftContext(seed=seed, model=shifter))
        durations["shift"] = round(time.perf_counter() - t, 3)
    responses: dict[str, list[ResponseRecord]] = {}
    for name, backend in models.items():
        t = time.perf_counter()
        responses[name] = [
            r
            for s in suites
            for r in _respond(name, backend, s, detector, params, on_progress, None, cross_check)
        ]
        durations[f"generate:{name}"] = round(time.perf_counter() - t, 3)
        if families:
            t = time.perf_counter()
            by_name = {s.name: s for s in suites}
            for (suite_name, _), sp in shifted.items():
                suite = by_name[suite_name]
                responses[name] += _respond(
                    name, backend, suite, detector, params, on_progress, sp, cross_check
                )
            durations[f"shifted:{name}"] = round(time.perf_counter() - t, 3)
    notes = list(DEFINITIONS)
    second = (cross_check.name, cross_check.version) if cross_check is not None else None
    if cross_check is not None:
        notes.append(
            f"cross_check: every reply is also labelled by a second detector, {cross_check.name} "
            f"v{cross_check.version}; its harmful_compliance, over_refusal and helpful_answered "
            "follow the same definitions, agreement is the share of replies (generation "
            "succeeded) both detectors label alike."
        )
    has_helpful = any(s.kind == "helpful" for s in suites)
    compare = judge is not None and has_helpful and baseline in models
    if judge is None:
        notes.append("helpfulness_win_rate is null for every model: no judge was given.")
    elif not has_helpful:
        notes.append("helpfulness_win_rate is null for every model: no helpful suite was given.")
    elif baseline not in models:
        notes.append(
            f"helpfulness_win_rate is null for every model: the baseline {baseline!r} is not "
            "among the evaluated models."
        )
    judgments: dict[str, list[JudgmentRecord]] = {}
    if compare and judge is not None:
        base_help = [r for r in responses[baseline] if r.kind == "helpful" and r.shift is None]
        for name in models:
            if name == baseline:
                continue
            t = time.perf_counter()
            mine = [r for r in responses[name] if r.kind == "helpful" and r.shift is None]
            judgments[name] = _judge(judge, name, baseline, mine, base_help)
            if on_progress:
                on_progress(2 * len(mine), 0)
            durations[f"judge:{name}"] = round(time.perf_counter() - t, 3)
    metrics = {
        name: model_metrics(
            recs,
            judgments.get(name),
            asi=asi_metrics(recs, families, n_boot=n_boot, seed=seed) if families else None,
            n_boot=n_boot,
            seed=seed,
            cross_check=second,
        )
        for name, recs in responses.items()
    }
    instruments: dict[str, Validation] = {}
    if detector_validation is not None:
        instruments["detector"] = detector_validation
    if compare:
        checked = judge_validation or NOT_CALIBRATED
        instruments["judge"] = checked
        for m in metrics.values():
            if m.helpfulness_win_rate is not None:
                m.helpfulness_win_rate_validation = checked
        if not checked.validated:
            notes.append(f"helpfulness_win_rate: {checked.reason}.")
    roles = {"judge": judge.spec} if judge is not None else {}
    if uses_model:
        roles["shift"] = shifter.spec
    durations["total"] = round(time.perf_counter() - start, 3)
    meta = EvalMeta(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        models={name: b.spec for name, b in models.items()},
        roles=roles,
        baseline=baseline if compare else None,
        detector={"name": detector.name, "version": detector.version},
        cross_check={"name": second[0], "version": second[1]} if second else None,
        judge_template=helpfulness_template().id if compare else None,
        generation=params,
        seeds={"generation": params.seed, "bootstrap": seed, "examples": seed},
        suites={
            s.name: SuiteInfo(
                kind=s.kind, source=s.source, split=s.split, n=len(s.prompts), sha256=s.sha256()
            )
            for s in suites
        },
        intervals={
            **INTERVALS,
            "helpfulness_win_rate": INTERVALS["helpfulness_win_rate"]
            + f" ({n_boot} resamples, seed {seed})",
        },
        durations=durations,
        notes=notes,
        shifts={f: get_shift(f).description for f in families},
        shift_texts=shift_texts().id if families else None,
        instruments=instruments,
    )
    return EvalResult(
        metrics=MetricsFile(models=metrics, meta=meta),
        responses=[r for recs in responses.values() for r in recs],
        judgments=[j for js in judgments.values() for j in js],
    )
