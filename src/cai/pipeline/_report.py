"""The pipeline's own sections of report.html: recipe, models per role, constitution, data sizes,
degenerate outputs, judge position bias, SL-CAI examples and the stage log.

Owns: reading the run directory's summaries and rendering them as escaped HTML fragments that
``cai.evaluate.render_report`` places after the metrics.
Must not know: how the numbers were computed. Every piece of model or user text goes through
``html.escape``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.oversight import OversightMetrics
from cai.records import SLCAIRecord
from cai.store import read_jsonl

if TYPE_CHECKING:
    from cai.pipeline._context import RunContext


def _table(rows: list[tuple[str, str]], head: tuple[str, str] | None = None) -> str:
    h = f"<tr><th>{escape(head[0])}</th><th>{escape(head[1])}</th></tr>" if head else ""
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{h}{body}</table>"


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _recipe(ctx: RunContext) -> str:
    m = ctx.recipe.models
    roles = [
        ("policy", m.policy),
        ("critic", m.critic),
        ("feedback", ", ".join(m.feedback)),
        ("judge", m.judge or "none"),
    ]
    dump = json.dumps(ctx.recipe.model_dump(mode="json"), indent=2)
    return (
        _table(roles, ("role", "model spec"))
        + f"<details><summary>full recipe</summary><pre>{escape(dump)}</pre></details>"
    )


def _constitution(ctx: RunContext) -> str:
    c = ctx.constitution
    tiers = Counter(p.tier for p in c.principles)
    rows = [("name", c.label()), ("priority", " > ".join(c.priority))]
    rows += [(f"principles in tier {t}", str(tiers.get(t, 0))) for t in c.priority]
    rows += [("layers", ", ".join(layer.id for layer in c.layers))]
    rows += [("few-shot examples", str(len(c.few_shot)))]
    return _table(rows)


def _sizes(ctx: RunContext) -> str:
    p = ctx.path
    rows = [
        ("prompts (red-team + helpful)", _lines(p("data/prompts.jsonl"))),
        ("policy responses", _lines(p("data/responses.jsonl"))),
        ("helpfulness SFT examples", _lines(p("data/helpful_sft.jsonl"))),
        ("look-alike SFT examples (safe requests answered)", _lines(p("data/lookalike_sft.jsonl"))),
        ("critic demonstrations", _lines(p("data/critic_demonstrations.jsonl"))),
        ("feedback demonstrations", _lines(p("data/feedback_demonstrations.jsonl"))),
        ("SL-CAI traces", _lines(p("data/sl_cai.jsonl"))),
        ("SL-CAI SFT examples (non-degenerate)", _lines(p("data/sft.jsonl"))),
        ("pre-training segments (control-token tagged)", _lines(p("data/pretrain_corpus.jsonl"))),
        ("response pairs", _lines(p("data/pairs.jsonl"))),
        ("preference pairs (training)", _lines(p("data/preferences.jsonl"))),
        ("ties (kept out of training)", _lines(p("data/ties.jsonl"))),
        ("DPO pairs (AI feedback + SL-CAI revisions)", _lines(p("data/dpo_preferences.jsonl"))),
    ]
    return _table([(k, str(v)) for k, v in rows], ("dataset", "records"))


def _degenerate(records: list[SLCAIRecord]) -> str:
    reasons = Counter(r.degenerate or "usable" for r in records)
    if not records:
        return "<p>No SL-CAI records.</p>"
    rows = [(k, f"{v} ({v / len(records):.0%})") for k, v in reasons.most_common()]
    note = (
        "<p>Degenerate revisions stay in <code>data/sl_cai.jsonl</code> with their reason and are "
        "never trained on.</p>"
    )
    return note + _table(rows, ("outcome", "records"))


def _bias(ctx: RunContext) -> str:
    path = ctx.path("data/feedback_summary.json")
    if not path.exists():
        return "<p>The feedback stage has not run.</p>"
    s = json.loads(path.read_text())
    st = s["stats"]

    def rate(r: dict[str, Any]) -> str:
        if r.get("value") is None:
            return "no data"
        lo, hi = r["ci95"]
        return f"{r['value']:.2f} (n={r['n']}, 95% CI {lo:.2f}-{hi:.2f})"

    rows = [
        ("slot A wins (0.50 = no position bias)", rate(st["position_bias"])),
        ("order consistency (both orders agree)", rate(st["order_consistency"])),
        ("pairs labelled", str(s["labelled"])),
        ("ties (orders disagree or low confidence)", str(s["ties"])),
    ]
    ci = st["position_bias"].get("ci95")
    verdict = ""
    if ci and not ci[0] <= 0.5 <= ci[1]:
        verdict = (
            "<p class='warn'><b>The feedback model is position-biased:</b> the 95% interval of "
            "its slot-A win rate excludes 0.5. Only order-averaged labels are used; pairs whose "
            "two orders disagree are ties and are not trained on.</p>"
        )
    return verdict + _table(rows)


def _examples(ctx: RunContext, records: list[SLCAIRecord], k: int = 3) -> str:
    usable = [r for r in records if r.degenerate is None and r.rounds] or [
        r for r in records if r.rounds
    ]
    pick = random.Random(ctx.recipe.seed).sample(usable, min(k, len(usable)))
    out = []
    for r in pick:
        parts = [f"<p><b>Prompt</b> ({escape(r.prompt.category)}): {escape(r.prompt.text)}</p>"]
        parts.append(f"<p><b>Draft</b></p><pre>{escape(r.draft)}</pre>")
        for i, rd in enumerate(r.rounds, 1):
            pr = ctx.constitution.principle(rd.principle_id)
            parts.append(
                f"<p><b>Round {i}: principle <code>{escape(pr.id)}</code></b> "
                f"({escape(pr.tier)}): <i>{escape(pr.critique)}</i></p>"
                f"<p><b>Critique</b></p><pre>{escape(rd.critique)}</pre>"
                f"<p><b>Revision</b></p><pre>{escape(rd.revision)}</pre>"
            )
        status = escape(r.degenerate or "usable")
        out.append(f"<div class='example'>{''.join(parts)}<p>outcome: {status}</p></div>")
    return "".join(out) or "<p>No SL-CAI records.</p>"


def evaluator_status(run_dir: Path) -> list[tuple[str, str]]:
    """(role, what happened) for the critic and the feedback model: trained, reused from the
    adapter cache, skipped (why) or failed (the error), so a run that fell back to the untrained
    model never reads as if it had trained one."""
    from cai.pipeline._events import EventLog, RunEvent

    last: dict[str, RunEvent] = {}
    for event in EventLog(run_dir / "events.jsonl").events():
        if event.stage in ("train_critic", "train_feedback"):
            last[event.stage] = event
    out = []
    for stage in ("train_critic", "train_feedback"):
        role = stage.removeprefix("train_")
        ev = last.get(stage)
        d = ev.detail if ev else {}
        if ev is None or ev.event in ("start", "reset"):
            out.append(
                (role, "not trained: the stage has not finished; the untrained model was used")
            )
        elif ev.event == "skipped":
            out.append((role, f"not trained: {d.get('reason', '')}"))
        elif ev.event == "failed":
            out.append((role, f"FAILED, not trained: {d.get('error', '')}"))
        elif d.get("method") == "probe":
            how = "reused from the cache" if d.get("cached") else "fitted"
            cv = d.get("cv_accuracy")
            cv_s = f"{cv:.3f}" if isinstance(cv, int | float) else "?"
            out.append(
                (
                    role,
                    f"reward probe {how} on {d.get('demonstrations')} demonstrations from "
                    f"{d.get('source')} (layer {d.get('layer')}, cross-validated accuracy on "
                    f"them {cv_s}; base {d.get('base')}; template {d.get('template')})",
                )
            )
        else:
            how = "reused from the adapter cache" if d.get("cached") else "trained"
            loss = d.get("loss")
            loss_s = f", final loss {loss:.3f}" if isinstance(loss, int | float) else ""
            out.append(
                (
                    role,
                    f"{how} on {d.get('demonstrations')} demonstrations from {d.get('source')} "
                    f"({d.get('steps')} steps{loss_s}; base {d.get('base')}; "
                    f"template {d.get('template')})",
                )
            )
    return out


def _evaluators(ctx: RunContext) -> str:
    note = (
        "<p>The critic (a LoRA adapter) and the feedback model (a reward probe on the frozen "
        "model's hidden states, or a LoRA adapter) are trained on constitutional "
        "demonstrations (principle in the input) before the run uses them; the policy never "
        "trains on the demonstrations. How far the feedback model agrees with labels is in "
        "the calibration section.</p>"
    )
    return note + _table(evaluator_status(ctx.run_dir), ("evaluator", "status"))


def _stage_log(ctx: RunContext) -> str:
    from cai.pipeline._events import EventLog

    rows = []
    for ev in EventLog(ctx.path("events.jsonl")).events():
        if ev.event in ("done", "skipped", "failed"):
            secs = ev.detail.get("seconds")
            info = {k: v for k, v in ev.detail.items() if k != "seconds"}
            when = f"{secs:.0f} s" if isinstance(secs, int | float) else ""
            rows.append((f"{ev.stage}: {ev.event} {when}".strip(), json.dumps(info)[:300]))
    return _table(rows, ("stage", "detail"))


def _oversight(ctx: RunContext) -> tuple[str, str] | None:
    """The oversight chain's figures when ``cai oversee`` has measured this run."""
    path = ctx.path("oversight_metrics.json")
    if not path.exists():
        return None
    m = OversightMetrics.model_validate_json(path.read_text(encoding="utf-8"))
    rows = [
        ("config", m.config),
        ("items routed / reviewed by humans", f"{m.items} / {m.reviewed}"),
        ("escalation rate", m.escalation_rate.fmt()),
        ("human override rate", m.override_rate.fmt()),
        ("estimated error rate of items humans never saw", m.unseen_error_rate.fmt()),
    ]
    rows += [
        (f"level {lv.level} ({lv.kind}): accuracy vs humans", lv.accuracy.fmt()) for lv in m.levels
    ]
    return ("Oversight: AI levels against human reviewers", _table(rows, ("measure", "value")))


def pipeline_sections(ctx: RunContext) -> list[tuple[str, str]]:
    """(title, escaped HTML) sections for report.html."""
    trace = ctx.path("data/sl_cai.jsonl")
    records = list(read_jsonl(trace, SLCAIRecord)) if trace.exists() else []
    from cai.pipeline._pretrain import pretrain_section
    from cai.pipeline._redteam import redteam_section
    from cai.pipeline._routing_report import routing_sections

    redteam = redteam_section(ctx)
    pretrain = pretrain_section(ctx)
    oversight = _oversight(ctx)
    return [
        ("Recipe and models per role", _recipe(ctx)),
        ("Constitution", _constitution(ctx)),
        ("Evaluators: critic and feedback model", _evaluators(ctx)),
        ("Data set sizes", _sizes(ctx)),
        ("Degenerate SL-CAI outputs", _degenerate(records)),
        ("Feedback model position bias", _bias(ctx)),
        ("SL-CAI examples: draft, critique, revision", _examples(ctx, records)),
        *([pretrain] if pretrain else []),
        *([redteam] if redteam else []),
        *routing_sections(ctx.run_dir, records, ctx.constitution),
        *([oversight] if oversight else []),
        ("Stage log", _stage_log(ctx)),
    ]
