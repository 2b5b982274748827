"""The stages of ``cai run``, in order: each reads earlier outputs and writes its own.

Owns: wiring workflows together (which prompts, models, files and settings each one gets).
Must not know: how any workflow works inside. Every stage returns a detail dict for the event
log or raises ``StageSkipped`` with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from cai.backends import Backend, get_embedder
from cai.constitution import Router, default_routing
from cai.critique import CritiqueConfig, run_critique_stage, trim_to_sentence
from cai.critique._llm_checks import llm_topic_classifier
from cai.evaluate import (
    CALIBRATION_PAIRS,
    CalibrationFile,
    calibrate_judge,
    calibration_pairs,
    evaluate_models,
    judge_check,
    load_suites,
    request_count,
    write_calibration,
    write_outputs,
)
from cai.evaluate import load_labels as load_label_set
from cai.feedback import FeedbackConfig, run_feedback_stage, run_pairs_stage
from cai.feedback._panels import run_panel_stage
from cai.oversight import training_preferences, training_sft
from cai.pipeline._context import RunContext, StageSkipped
from cai.pipeline._evaluators import (
    CRITIC_TEMPLATE,
    critic_copy_sources,
    critic_spec,
    feedback_specs,
    stage_train_critic,
    stage_train_feedback,
)
from cai.pipeline._pretrain import pretrain_models, sft_base, stage_pretrain
from cai.pipeline._progress import request_progress
from cai.pipeline._recipe import _TrainStage
from cai.pipeline._redteam import resolve_source, stage_redteam
from cai.pipeline._report import pipeline_sections
from cai.records import (
    GenerationRequest,
    Message,
    PairRecord,
    PreferenceRecord,
    PromptRecord,
    SamplingParams,
    SFTExample,
    SLCAIRecord,
)
from cai.scoring import (
    NOT_CALIBRATED,
    RUN_CALIBRATION,
    JudgeCheck,
    RunCalibration,
    detector_validation,
    get_detector,
    judge_validation,
    read_run_calibration,
)
from cai.store import (
    JsonlWriter,
    load_prompts,
    read_jsonl,
    write_json,
    write_prompts,
    write_records,
)
from cai.train import TrainJob, TrainResult, train

Stage = Callable[[RunContext], dict[str, Any]]
Comparison = Literal["compare", "helpfulness"]


def _load_sets(sources: list[str], limit: int, exclude: set[str]) -> list[PromptRecord]:
    """Train-split prompts from several sets, interleaved, first ``limit`` after ``exclude``."""
    sets = [
        [p for p in load_prompts(resolve_source(s), split="train") if p.id not in exclude]
        for s in sources
    ]
    mixed = [p for group in itertools.zip_longest(*sets) for p in group if p is not None]
    return mixed[:limit]


def stage_prompts(ctx: RunContext) -> dict[str, Any]:
    pr = ctx.recipe.prompts
    red = _load_sets(pr.red_team, ctx.cap(pr.red_team_limit), set())
    helpful = _load_sets(pr.helpful, ctx.cap(pr.helpful_limit), set()) if pr.helpful_limit else []
    pairs = _load_sets(pr.pairs, ctx.cap(pr.pairs_limit), {p.id for p in red})
    lookalike = (
        _load_sets(pr.lookalike, ctx.cap(pr.lookalike_limit), set()) if pr.lookalike_limit else []
    )
    write_prompts(ctx.path("data/prompts.jsonl"), [*red, *helpful])
    write_prompts(ctx.path("data/pair_prompts.jsonl"), pairs)
    write_prompts(ctx.path("data/lookalike_prompts.jsonl"), lookalike)
    return {
        "red_team": len(red),
        "helpful": len(helpful),
        "pairs": len(pairs),
        "lookalike": len(lookalike),
    }


def _lookalike_prompts(ctx: RunContext) -> list[PromptRecord]:
    path = ctx.path("data/lookalike_prompts.jsonl")
    return list(read_jsonl(path, PromptRecord)) if path.exists() else []


def _prompts(ctx: RunContext, kind: str | None = None) -> list[PromptRecord]:
    rows = list(read_jsonl(ctx.path("data/prompts.jsonl"), PromptRecord))
    if kind == "helpful":
        return [p for p in rows if p.kind == "helpful"]
    return [p for p in rows if p.kind != "helpful"]


def stage_respond(ctx: RunContext) -> dict[str, Any]:
    """The policy answers every prompt; its answers to ordinary requests become helpfulness SFT
    data (its own answers, so SFT keeps what the base model could already do), and so do its
    answers to safe look-alike requests (so SFT learns the boundary, not to refuse). An answer
    cut by the token limit is trimmed to its last complete sentence; refusals are left out."""
    policy = ctx.pool.get(ctx.recipe.models.policy)
    lookalike = _lookalike_prompts(ctx)
    lookalike_ids = {p.id for p in lookalike}
    prompts = [*_prompts(ctx), *_prompts(ctx, "helpful"), *lookalike]
    with request_progress(len(prompts), "respond") as advance:
        outs = policy.generate(
            [GenerationRequest.user(p.text) for p in prompts], _critique_config(ctx).draft
        )
        advance(len(prompts), sum(g.completion_tokens for g in outs if not g.cached))
    failed = [p.id for p, g in zip(prompts, outs, strict=True) if g.finish_reason == "error"]
    helpful = []
    for p, g in zip(prompts, outs, strict=True):
        text = g.text.strip() if g.finish_reason == "stop" else trim_to_sentence(g.text)
        if (p.kind == "helpful" or p.id in lookalike_ids) and text:
            helpful.append((p, text))
    labels = get_detector("rules").detect([p.text for p, _ in helpful], [t for _, t in helpful])
    kept = [
        (p, t) for (p, t), d in zip(helpful, labels, strict=True) if d.label == "full_compliance"
    ]
    with JsonlWriter(ctx.path("data/responses.jsonl"), SFTExample) as w:
        for p, g in zip(prompts, outs, strict=True):
            if g.finish_reason != "error":
                w.write(_example(p.id, p.text, g.text.strip()))
    with JsonlWriter(ctx.path("data/helpful_sft.jsonl"), SFTExample) as w:
        w.write_all(_example(p.id, p.text, t) for p, t in kept if p.id not in lookalike_ids)
    with JsonlWriter(ctx.path("data/lookalike_sft.jsonl"), SFTExample) as w:
        w.write_all(_example(p.id, p.text, t) for p, t in kept if p.id in lookalike_ids)
    if failed:
        raise RuntimeError(f"{len(failed)} responses failed (first: {failed[0]}); rerun to retry")
    n_look = sum(p.id in lookalike_ids for p, _ in kept)
    return {
        "responses": len(prompts),
        "helpful_sft": len(kept) - n_look,
        "lookalike_sft": n_look,
        "helpful_answers": len(helpful),
    }


def _example(rid: str, prompt: str, answer: str) -> SFTExample:
    return SFTExample(
        id=rid,
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=answer)],
    )


def _critique_config(ctx: RunContext) -> CritiqueConfig:
    """The SL-CAI settings; its draft settings are also respond's, so drafts are made once.
    A trained critic gets the compact template it was trained on and no worked examples."""
    r = ctx.recipe
    trained = ctx.trained_spec("critic") is not None
    return CritiqueConfig.from_budget(
        r.generation.max_new_tokens,
        rounds=r.stages.critique.rounds,
        few_shot=0 if trained else r.stages.critique.few_shot,
        seed=r.seed,
        repetition_penalty=r.generation.critic_repetition_penalty,
        template=CRITIC_TEMPLATE if trained else "sl_cai",
        copy_sources=critic_copy_sources(ctx),
        escalation=r.stages.critique.escalation,
        stop_early=r.stages.critique.stop_early,
    )


def _router(ctx: RunContext) -> Router | None:
    """The context/risk router the recipe asks for (``stages.critique.router``), or None."""
    st = ctx.recipe.stages.critique
    if not st.router:
        return None
    embedder = get_embedder(st.router)
    classify = None
    if st.router_llm:
        topics = [t.id for t in default_routing().topics]
        classify = llm_topic_classifier(ctx.pool.get(st.router_llm, dtype="float32"), topics)
    return Router(
        embedder.embed, embed_name=embedder.name, classify=classify, classify_name=st.router_llm
    )


def stage_critique(ctx: RunContext) -> dict[str, Any]:
    r = ctx.recipe
    cfg = _critique_config(ctx)
    prompts = _prompts(ctx)
    policy, critic = ctx.pool.get(r.models.policy), ctx.pool.get(critic_spec(ctx))
    router = _router(ctx)
    with request_progress(len(prompts) * (1 + 2 * cfg.rounds), "critique") as advance:
        s = run_critique_stage(
            prompts,
            ctx.constitution,
            policy,
            critic,
            ctx.path("data"),
            cfg,
            on_progress=advance,
            router=router,
        )
    if s.failed:
        raise RuntimeError(f"{s.failed} prompts failed: {s.failures[0]}; rerun to retry")
    return {
        "written": s.written,
        "sft_examples": s.sft_examples,
        "degenerate": s.degenerate,
        "critic": critic.spec,
        "template": s.template,
        **({"stopped_early": s.stopped_early} if cfg.stop_early else {}),
    }


def _train(job: TrainJob, st: _TrainStage) -> TrainResult:
    """Train in this process, or under ``accelerate launch`` on ``st.num_processes``."""
    return train(job, st.num_processes, st.accelerate_config)


def stage_sft(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.sft
    revisions = training_sft(ctx.run_dir)  # human-reviewed when reviewed
    n = sum(1 for _ in read_jsonl(revisions, SFTExample))
    if n == 0:
        raise StageSkipped("no usable SL-CAI revisions (all degenerate); see critique_summary")
    args = st.trainer_args(str(ctx.path("models/.sft-tmp")), ctx.recipe.seed)
    ctx.pool.release(ctx.run_spec("sft"))
    base = sft_base(ctx)  # models.policy, or models/pretrain (stages.sft.base)
    job = TrainJob(
        method="sft",
        base_model=base,
        data=[str(revisions)],
        helpful=[
            str(p)
            for p in (ctx.path("data/helpful_sft.jsonl"), ctx.path("data/lookalike_sft.jsonl"))
            if p.exists()
        ],
        out_dir=str(ctx.path("models/sft")),
        config={"helpful_ratio": st.helpful_ratio, **args},
    )
    res = _train(job, st)
    detail: dict[str, Any] = {
        "examples": res.n_examples,
        "steps": res.steps,
        "loss": res.final_loss,
    }
    return detail | ({"base": base} if st.base != "policy" else {})


def stage_pairs(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.pairs
    prompts = list(read_jsonl(ctx.path("data/pair_prompts.jsonl"), PromptRecord))
    policy = ctx.pool.get(ctx.trained_spec("sft") or ctx.recipe.models.policy)
    params = SamplingParams(
        max_new_tokens=ctx.recipe.generation.max_new_tokens,
        temperature=st.temperature,
        top_p=st.top_p,
        seed=ctx.recipe.seed,
    )
    with request_progress(len(prompts) * 2, "pairs") as advance:
        s = run_pairs_stage(prompts, policy, ctx.path("data"), params, on_progress=advance)
    if s.failed:
        raise RuntimeError(f"{s.failed} prompts failed: {s.failures[0]}; rerun to retry")
    return {"pairs": s.written, "identical": s.identical}


BOUNDARY_PRINCIPLE = "help.sounds_risky"
"""The principle a boundary pair applies (answer safe requests that only sound risky)."""


def _boundary_pairs(ctx: RunContext, n: int) -> list[PreferenceRecord]:
    """On a safe look-alike request, the policy's helpful answer preferred to a decline.

    The answers are the policy's own (``respond`` kept those the rules detector calls full
    compliance); the declines are usable revisions of harmful drafts that the detector calls a
    refusal, taken in turn, so the texts DPO raises on harmful requests are the ones it lowers
    on safe ones. The label comes from the prompt set (the request is safe), not a model.
    """
    prompts = {p.id: p for p in read_jsonl(ctx.path("data/lookalike_prompts.jsonl"), PromptRecord)}
    answers = [
        (prompts[ex.id], ex.messages[-1].content)
        for ex in read_jsonl(ctx.path("data/lookalike_sft.jsonl"), SFTExample)
        if ex.id in prompts
    ][:n]
    usable = [
        r for r in read_jsonl(ctx.path("data/sl_cai.jsonl"), SLCAIRecord) if r.degenerate is None
    ]
    labels = get_detector("rules").detect(
        [r.prompt.text for r in usable], [r.final for r in usable]
    )
    declines = [
        r
        for r, d in zip(usable, labels, strict=True)
        if d.label in ("full_refusal", "partial_refusal")
    ]
    out = []
    for i, (prompt, answer) in enumerate(answers if declines else []):
        decline = declines[i % len(declines)]
        out.append(
            PreferenceRecord(
                id=f"boundary-{prompt.id}-vs-{decline.id}",
                prompt=[Message(role="user", content=prompt.text)],
                chosen=[Message(role="assistant", content=answer)],
                rejected=[Message(role="assistant", content=decline.final)],
                soft_label=1.0,
                margin=0.0,  # no feedback-model margin: the prompt set labels the request safe
                principle_ids=[BOUNDARY_PRINCIPLE],
                models={"policy": ctx.recipe.models.policy, "critic": decline.models["critic"]},
                template_version=decline.template_version,
                seed=decline.seed,
            )
        )
    return out


def _judges(ctx: RunContext) -> list[tuple[str, str, Comparison]]:
    """(role, spec, comparison) of every model the run asks to judge."""
    specs = feedback_specs(ctx)
    out: list[tuple[str, str, Comparison]] = [
        ("feedback" if i == 0 else f"feedback[{i}]", spec, "compare")
        for i, spec in enumerate(specs)
    ]
    if ctx.recipe.models.judge:
        out.append(("judge", ctx.recipe.models.judge, "helpfulness"))
    return out


def stage_calibrate(ctx: RunContext) -> dict[str, Any]:
    """Every feedback model and the judge on labelled pairs, before the run uses them."""
    st = ctx.recipe.stages.calibrate
    if not st.enabled:
        raise StageSkipped("calibration is off: every judge-made number is 'never calibrated'")
    if st.labels is None:
        labels = calibration_pairs(st.per_category, seed=ctx.recipe.seed)
    else:
        labels = load_label_set(st.labels, seed=ctx.recipe.seed)
    checks: list[JudgeCheck] = []
    for role, spec, comparison in _judges(ctx):
        judge = ctx.pool.get(spec, dtype="float32")  # as the feedback stage and judge load it
        with request_progress(2 * len(labels), f"calibrate {role}") as advance:
            result = calibrate_judge(
                judge,
                labels,
                comparison=comparison,
                constitution=ctx.constitution if comparison == "compare" else None,
                probe=False,  # the bundled set has its own hedged-harmful pairs
                subset="all" if st.per_category is None else f"{st.per_category} per category",
                seed=ctx.recipe.seed,
                on_progress=advance,
            )
        rel = f"calibration/{role.replace('[', '-').rstrip(']')}"
        write_calibration(result, ctx.path(rel))
        checks.append(judge_check(result, role, f"{rel}/calibration.json"))
    shown = labels.path if st.labels else CALIBRATION_PAIRS
    detector, accuracy = detector_validation(get_detector(ctx.recipe.stages.evaluate.detector))
    run_cal = RunCalibration(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        labels=f"{shown} sha256:{labels.sha256[:12]}",
        n=len(labels),
        judges=checks,
        detector=detector,
        detector_accuracy=accuracy,
    )
    write_json(ctx.path(RUN_CALIBRATION), run_cal)
    return {
        c.role: {
            "kappa": c.kappa.value,
            "validated": c.validation.validated,
            "seconds": c.seconds,
        }
        for c in checks
    }


def stage_feedback(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.feedback
    pairs = list(read_jsonl(ctx.path("data/pairs.jsonl"), PairRecord))
    # float32: bf16 rounds letter log-probabilities to ~0.125 and produces dead heats.
    judges = [ctx.pool.get(spec, dtype="float32") for spec in feedback_specs(ctx)]
    cfg = FeedbackConfig(
        principles_per_pair=st.principles_per_pair,
        seed=ctx.recipe.seed,
        cot=st.cot,
        few_shot=st.few_shot,
        tie_threshold=st.tie_threshold,
        min_confidence=st.min_confidence,
        router=_router(ctx),
    )
    total = len(pairs) * st.principles_per_pair * len(judges) * 2
    with request_progress(total, "feedback") as advance:
        s = run_feedback_stage(
            pairs, ctx.constitution, judges, ctx.path("data"), cfg, on_progress=advance
        )
    if s.failed:
        raise RuntimeError(f"{s.failed} pairs failed: {s.failures[0]}; rerun to retry")
    bias = s.stats.position_bias
    detail: dict[str, Any] = {
        "labelled": s.labelled,
        "ties": s.ties,
        "position_bias_a": bias.value,
        "n": bias.n,
    }
    run_cal = read_run_calibration(ctx.run_dir)
    checks = [c for c in run_cal.judges if c.role.startswith("feedback")] if run_cal else []
    detail["validated"] = bool(checks) and all(c.validation.validated for c in checks)
    if not detail["validated"]:
        detail["note"] = "judge not validated: the labelled share is not a result"
    if st.panel:
        panel = run_panel_stage(
            pairs, ctx.constitution, judges, ctx.path("data/panel"), cfg, method=st.panel
        )
        detail |= {"panel_preferred": panel.preferred, "panel_ties": panel.ties}
    return detail


def _revision_pairs(ctx: RunContext) -> list[PreferenceRecord]:
    """SL-CAI traces as preferences: the final revision preferred to the policy's draft."""
    out = []
    for r in read_jsonl(ctx.path("data/sl_cai.jsonl"), SLCAIRecord):
        if r.degenerate is not None:
            continue
        out.append(
            PreferenceRecord(
                id=f"revision-{r.id}",
                prompt=[Message(role="user", content=r.prompt.text)],
                chosen=[Message(role="assistant", content=r.final)],
                rejected=[Message(role="assistant", content=r.draft)],
                soft_label=1.0,
                margin=0.0,  # no feedback-model margin: the critic rewrote it under a principle
                principle_ids=[x.principle_id for x in r.rounds],
                models=r.models,
                template_version=r.template_version,
                seed=r.seed,
            )
        )
    return out


def stage_dpo(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.dpo
    feedback = training_preferences(ctx.run_dir)  # human-reviewed labels win when reviewed
    revisions = _revision_pairs(ctx) if st.revision_pairs else []
    boundary = _boundary_pairs(ctx, ctx.cap(st.boundary_pairs)) if st.boundary_pairs else []
    prefs = feedback + revisions + boundary
    if len(prefs) < 2:
        raise StageSkipped(
            f"only {len(feedback)} AI-feedback and {len(revisions)} revision preference pair(s): "
            "the feedback model's labels were ties (see feedback_summary.json)"
        )
    data = ctx.path("data/dpo_preferences.jsonl")
    write_records(data, prefs)
    args = st.trainer_args(str(ctx.path("models/.dpo-tmp")), ctx.recipe.seed)
    ctx.pool.release(ctx.run_spec("dpo"))
    base = ctx.trained_spec("sft") or ctx.recipe.models.policy
    job = TrainJob(
        method="dpo",
        base_model=base,
        data=[str(data)],
        out_dir=str(ctx.path("models/dpo")),
        config={"beta": st.beta, **args},
    )
    res = _train(job, st)
    return {
        "feedback_pairs": len(feedback),
        "revision_pairs": len(revisions),
        **({"boundary_pairs": len(boundary)} if st.boundary_pairs else {}),
        "steps": res.steps,
        "loss": res.final_loss,
        "base": base,
    }


def _calibrate(ctx: RunContext, judge: Backend) -> CalibrationFile:
    """Calibrate the helpfulness judge on the recipe's human labels
    (calibration/judge-labels/calibration.json; the report shows it)."""
    ev = ctx.recipe.stages.evaluate
    assert ev.calibration_labels is not None
    labels = load_label_set(ev.calibration_labels, seed=ctx.recipe.seed, limit=ev.calibration_limit)
    with request_progress(2 * len(labels), "calibrate") as advance:
        result = calibrate_judge(
            judge,
            labels,
            comparison="helpfulness",
            subset="all" if ev.calibration_limit is None else f"first {len(labels)}",
            seed=ctx.recipe.seed,
            on_progress=advance,
        )
    write_calibration(result, ctx.path("calibration/judge-labels"))
    return result.file


def stage_evaluate(ctx: RunContext) -> dict[str, Any]:
    ev = ctx.recipe.stages.evaluate
    models = {"base": ctx.recipe.models.policy}
    models |= {n: spec for n in ("sft", "dpo") if (spec := ctx.trained_spec(n))}
    models |= pretrain_models(ctx)  # conditioned on <|ok|> and not, when the stage ran
    suites = load_suites(ev.suites, limit=ctx.cap(ev.limit))
    judge_spec = ctx.recipe.models.judge
    judge = ctx.pool.get(judge_spec, dtype="float32") if judge_spec else None
    params = SamplingParams(max_new_tokens=ev.max_new_tokens, seed=ctx.recipe.seed)
    backends = {name: ctx.pool.get(spec) for name, spec in models.items()}
    validation = NOT_CALIBRATED
    run_cal = read_run_calibration(ctx.run_dir)
    check = run_cal.check("judge") if run_cal else None
    if check is not None:
        validation = check.validation
    if judge is not None and ev.calibration_labels:
        human = _calibrate(ctx, judge)  # human labels outrank the bundled pairs
        validation = judge_validation(human.kappa, f"{ev.calibration_labels} (human labels)")
    shifter = ctx.pool.get(ev.shift_model) if ev.shift_model and ev.shifts else None
    total = request_count(list(models), suites, judge=judge is not None, shifts=len(ev.shifts))
    with request_progress(total, "evaluate") as advance:
        result = evaluate_models(
            backends,
            suites,
            get_detector(ev.detector),
            judge,
            params,
            seed=ctx.recipe.seed,
            on_progress=advance,
            shifts=ev.shifts,
            shift_model=shifter,
            judge_validation=validation,
            detector_validation=run_cal.detector if run_cal else None,
            cross_check=get_detector(ev.cross_check) if ev.cross_check else None,
        )
    for c in run_cal.judges if run_cal else []:
        if c.role.startswith("feedback"):  # its preference labels trained the dpo model
            result.metrics.meta.instruments[c.role] = c.validation
    write_outputs(
        result, ctx.run_dir, examples_per_kind=ev.examples, extra_sections=pipeline_sections(ctx)
    )
    m = result.metrics
    out: dict[str, Any] = {}
    for name in models:
        mm = m.models[name]
        out[name] = {
            "harmful_compliance": mm.harmful_compliance.value,
            "over_refusal": mm.over_refusal.value,
            "helpful_answered": mm.helpful_answered.value if mm.helpful_answered else None,
        }
        if mm.cross_check is not None:
            out[name]["cross_check_harmful_compliance"] = mm.cross_check.harmful_compliance.value
    return out


STAGE_FUNCS: dict[str, Stage] = {
    "prompts": stage_prompts,
    "respond": stage_respond,
    "train_critic": stage_train_critic,
    "train_feedback": stage_train_feedback,
    "critique": stage_critique,
    "pretrain": stage_pretrain,
    "sft": stage_sft,
    "pairs": stage_pairs,
    "calibrate": stage_calibrate,
    "feedback": stage_feedback,
    "dpo": stage_dpo,
    "redteam": stage_redteam,
    "evaluate": stage_evaluate,
}
