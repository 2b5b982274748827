"""The evaluation run: generate with every model, label, judge, and compute metrics.

Owns: the order of model calls (one batched ``generate`` per suite per model, one ``detect`` per
suite per model, one batched judge ``score`` call per compared model), the provenance in
``meta``, example sampling for the report, and writing the output files.
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
from cai.evaluate._metrics import DEFINITIONS, INTERVALS, model_metrics
from cai.evaluate._schema import (
    EvalMeta,
    JudgmentRecord,
    MetricsFile,
    ResponseRecord,
    SuiteInfo,
)
from cai.evaluate._suites import Suite
from cai.records import GenerationRequest, SamplingParams
from cai.scoring import Detector, helpfulness_template, judge_pairs

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
) -> list[ResponseRecord]:
    reqs = [GenerationRequest.user(p.text) for p in suite.prompts]
    gens = backend.generate(reqs, params)
    if on_progress:
        on_progress(len(reqs), sum(g.completion_tokens for g in gens if not g.cached))
    ok = [i for i, g in enumerate(gens) if g.finish_reason != "error"]
    found = detector.detect([suite.prompts[i].text for i in ok], [gens[i].text for i in ok])
    labels = dict(zip(ok, found, strict=True))
    return [
        ResponseRecord(
            id=f"{name}/{suite.name}/{p.id}",
            model=name,
            spec=backend.spec,
            suite=suite.name,
            kind=suite.kind,
            prompt_id=p.id,
            category=p.category,
            prompt=p.text,
            response=g.text if g.finish_reason != "error" else "",
            finish_reason=g.finish_reason,
            error=g.error if g.finish_reason == "error" else None,
            detection=labels.get(i),
        )
        for i, (p, g) in enumerate(zip(suite.prompts, gens, strict=True))
    ]


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
) -> EvalResult:
    """Evaluate each named model on every suite; see ``cai.evaluate._metrics`` for definitions."""
    _check(models, suites)
    start = time.perf_counter()
    durations: dict[str, float] = {}
    responses: dict[str, list[ResponseRecord]] = {}
    for name, backend in models.items():
        t = time.perf_counter()
        responses[name] = [
            r for s in suites for r in _respond(name, backend, s, detector, params, on_progress)
        ]
        durations[f"generate:{name}"] = round(time.perf_counter() - t, 3)
    notes = list(DEFINITIONS)
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
        base_help = [r for r in responses[baseline] if r.kind == "helpful"]
        for name in models:
            if name == baseline:
                continue
            t = time.perf_counter()
            mine = [r for r in responses[name] if r.kind == "helpful"]
            judgments[name] = _judge(judge, name, baseline, mine, base_help)
            if on_progress:
                on_progress(2 * len(mine), 0)
            durations[f"judge:{name}"] = round(time.perf_counter() - t, 3)
    metrics = {
        name: model_metrics(recs, judgments.get(name), n_boot=n_boot, seed=seed)
        for name, recs in responses.items()
    }
    durations["total"] = round(time.perf_counter() - start, 3)
    meta = EvalMeta(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        models={name: b.spec for name, b in models.items()},
        roles={"judge": judge.spec} if judge is not None else {},
        baseline=baseline if compare else None,
        detector={"name": detector.name, "version": detector.version},
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
    )
    return EvalResult(
        metrics=MetricsFile(models=metrics, meta=meta),
        responses=[r for recs in responses.values() for r in recs],
        judgments=[j for js in judgments.values() for j in js],
    )
