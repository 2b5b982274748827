"""The pretrain stage of ``cai run``: a corpus tagged by the constitution's scorer, then
continued pre-training of the policy with control tokens (conditional training).

Owns: which texts become segments (the run's red-team drafts, usable revisions and answers to
helpful and look-alike prompts; or the rows of the recipe's corpus files), the scoring rule
that tags each one, ``data/pretrain_corpus.jsonl``, the training job, what SFT starts from
(``stages.sft.base``) and the models the evaluate stage adds (the pretrained model conditioned
on ``<|ok|>`` and unconditioned).
Must not know: how detection or training work inside; it labels through ``cai.scoring`` and
trains through ``cai.train``.

The scoring rule: the request's kind and the refusal detector's label on the reply decide.

- harmful request (red-team prompt, ``harmful: true``), reply a full refusal: ``<|ok|>``
- harmful request, reply a compliance or a partial refusal: ``<|violates:P|>``
- safe request (helpful, look-alike, ``harmful: false``), reply a full compliance: ``<|ok|>``
- safe request, reply a full or partial refusal: ``<|violates:H|>``
- any request, reply undetermined (empty, garbage): left out
- no request (prose): ``<|ok|>``, the detector is not asked

P is the principle the request falls under: for a draft the first SL-CAI round's principle
(the critique was written under it), for a revision the last round's, for a corpus row its
``principle_id``. H is the over-refusal principle: a corpus row's ``principle_id`` when it
has one, else ``help.sounds_risky`` for a look-alike request and ``help.answer_question`` for
any other safe one (the first helpfulness-tier principle when the constitution lacks them;
with none the segment is left out). A row's own ``label``
wins over the rule. Degenerate revisions are left out (as from SFT). Prose has no request to
refuse or comply with, so the detectors cannot judge it: it is tagged ``<|ok|>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cai.backends import OK_TOKEN, violates_token
from cai.constitution import Constitution
from cai.errors import InputError
from cai.pipeline._context import RunContext, StageSkipped
from cai.records import PromptRecord, SFTExample, SLCAIRecord
from cai.scoring import get_detector
from cai.store import read_jsonl, write_records
from cai.train import PretrainSegment, TrainJob, read_corpus, train

CORPUS = "data/pretrain_corpus.jsonl"
"""The tagged segments the stage trains on."""
OVER_REFUSAL = {"lookalike": "help.sounds_risky", "safe": "help.answer_question"}
"""The principle a refusal of a safe request violates, by request kind."""
Kind = Literal["harmful", "lookalike", "safe", "prose"]


@dataclass
class _Text:
    """A text waiting for its token."""

    id: str
    source: str
    kind: Kind
    text: str
    prompt: str | None = None
    principle_id: str | None = None
    label: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    template_version: str | None = None
    seed: int | None = None


def _run_texts(ctx: RunContext) -> list[_Text]:
    """The run's own texts: drafts and usable revisions of red-team prompts, and the policy's
    answers to helpful and look-alike prompts."""
    out: list[_Text] = []
    trace = ctx.path("data/sl_cai.jsonl")
    for r in read_jsonl(trace, SLCAIRecord) if trace.exists() else []:
        if not r.rounds:
            continue
        made: dict[str, Any] = {"template_version": r.template_version, "seed": r.seed}
        policy = {"policy": r.models.get("policy", ctx.recipe.models.policy)}
        first, last = r.rounds[0].principle_id, r.rounds[-1].principle_id
        out.append(
            _Text(
                f"draft-{r.id}",
                "sl_cai.draft",
                "harmful",
                r.draft,
                r.prompt.text,
                first,
                models=policy,
                **made,
            )
        )
        if r.degenerate is None:  # degenerate revisions are never trained on
            out.append(
                _Text(
                    f"revision-{r.id}",
                    "sl_cai.revision",
                    "harmful",
                    r.final,
                    r.prompt.text,
                    last,
                    models=dict(r.models),
                    **made,
                )
            )
    prompts = {}
    for rel, kind in (
        ("data/prompts.jsonl", "safe"),
        ("data/lookalike_prompts.jsonl", "lookalike"),
    ):
        path = ctx.path(rel)
        for p in read_jsonl(path, PromptRecord) if path.exists() else []:
            if kind == "lookalike" or p.kind == "helpful":
                prompts[p.id] = (p, kind)
    responses = ctx.path("data/responses.jsonl")
    for ex in read_jsonl(responses, SFTExample) if responses.exists() else []:
        if ex.id not in prompts:
            continue  # a red-team draft: its trace above has it
        p, kind = prompts[ex.id]
        out.append(
            _Text(
                f"answer-{ex.id}",
                f"respond.{'lookalike' if kind == 'lookalike' else 'helpful'}",
                kind,  # type: ignore[arg-type]
                ex.messages[-1].content,
                p.text,
                models={"policy": ctx.recipe.models.policy},
                template_version="respond:plain-chat",
                seed=ctx.recipe.seed,
            )
        )
    return out


def _known(c: Constitution, pid: str) -> bool:
    return any(p.id == pid for p in c.principles)


def _file_texts(files: list[str], c: Constitution) -> list[_Text]:
    """The rows of the recipe's corpus files; an unknown principle names file and line."""
    out: list[_Text] = []
    for name in files:
        for line, row in read_corpus(name):
            for pid in (row.principle_id, None if row.label == "ok" else row.label):
                if pid is not None and not _known(c, pid):
                    raise InputError(f"{name}:{line}: unknown principle {pid!r}")
            kind: Kind = "prose"
            if row.prompt is not None:
                kind = "harmful" if row.harmful else "safe"
            out.append(
                _Text(
                    row.id or f"{Path(name).name}:{line}",
                    f"{name}:{line}",
                    kind,
                    row.text,
                    row.prompt,
                    row.principle_id,
                    row.label,
                )
            )
    return out


def _over_refusal(c: Constitution, kind: str) -> str | None:
    pid = OVER_REFUSAL.get(kind, OVER_REFUSAL["safe"])
    if _known(c, pid):
        return pid
    return next((p.id for p in c.principles if p.tier == "helpfulness"), None)


def tag_segments(
    texts: list[_Text], c: Constitution, detector_name: str
) -> tuple[list[PretrainSegment], int]:
    """Each text with its control token by the rule of the module docstring; (segments, left
    out)."""
    detector = get_detector(detector_name)
    asked = [t for t in texts if t.label is None and t.prompt is not None]
    labels = detector.detect([t.prompt or "" for t in asked], [t.text for t in asked])
    found = {id(t): d.label for t, d in zip(asked, labels, strict=True)}
    scorer = f"{detector.name}@{detector.version}"
    out: list[PretrainSegment] = []
    dropped = 0
    for t in texts:
        label = found.get(id(t))
        principle: str | None = None
        if t.label is not None:
            control = OK_TOKEN if t.label == "ok" else violates_token(t.label)
            principle, reason, by = (None if t.label == "ok" else t.label), "label in file", "file"
        elif t.prompt is None:
            control, reason, by = OK_TOKEN, "prose: no request to judge", "rule"
        elif label == "undetermined":
            dropped += 1
            continue
        elif t.kind == "harmful":
            principle = t.principle_id
            ok = label == "full_refusal"
            if not ok and principle is None:
                dropped += 1
                continue
            control = OK_TOKEN if ok else violates_token(str(principle))
            reason, by = f"harmful request, reply {label}", scorer
        else:
            principle = t.principle_id or _over_refusal(c, t.kind)
            ok = label == "full_compliance"
            if not ok and principle is None:
                dropped += 1
                continue
            control = OK_TOKEN if ok else violates_token(str(principle))
            reason, by = f"safe request ({t.kind}), reply {label}", scorer
        out.append(
            PretrainSegment(
                id=t.id,
                source=t.source,
                prompt=t.prompt,
                text=t.text,
                control=control,
                principle_id=principle,
                reason=reason,
                scorer=by,
                models=t.models,
                template_version=t.template_version,
                seed=t.seed,
            )
        )
    return out, dropped


def stage_pretrain(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.pretrain
    if not st.enabled:
        raise StageSkipped("off in the recipe (stages.pretrain.enabled)")
    c = ctx.constitution
    texts = _file_texts(st.corpus, c) if st.corpus else _run_texts(ctx)
    segments, dropped = tag_segments(texts, c, st.detector)
    if not segments:
        raise StageSkipped("no corpus segments (no texts, or the detector could judge none)")
    data = ctx.path(CORPUS)
    write_records(data, segments)
    args = st.trainer_args(str(ctx.path("models/.pretrain-checkpoints")), ctx.recipe.seed)
    args |= {"save_strategy": "steps", "save_steps": st.checkpoint_steps, "save_total_limit": 1}
    args |= {
        "control_tokens": [OK_TOKEN, *(violates_token(p.id) for p in c.principles)],
        "train_layers": st.train_layers,
    }
    ctx.pool.release(ctx.run_spec("pretrain"))
    job = TrainJob(
        method="pretrain",
        base_model=ctx.recipe.models.policy,
        data=[str(data)],
        out_dir=str(ctx.path("models/pretrain")),
        config=args,
    )
    res = train(job, st.num_processes, st.accelerate_config)
    ok = sum(s.control == OK_TOKEN for s in segments)
    return {
        "segments": len(segments),
        "ok": ok,
        "violates": len(segments) - ok,
        "left_out": dropped,
        "corpus": ", ".join(st.corpus) if st.corpus else "run",
        "detector": st.detector,
        "steps": res.steps,
        "loss": res.final_loss,
        "train_seconds": res.seconds,
        "resumed_from": res.resumed_from,
        "condition": OK_TOKEN,
    }


def sft_base(ctx: RunContext) -> str:
    """The model SFT starts from (``stages.sft.base``)."""
    if ctx.recipe.stages.sft.base == "policy":
        return ctx.recipe.models.policy
    spec = ctx.trained_spec("pretrain")
    if spec is None:
        raise InputError(
            "stages.sft.base is pretrain but models/pretrain was not trained "
            "(see the pretrain stage in events.jsonl)"
        )
    return spec


def pretrain_models(ctx: RunContext) -> dict[str, str]:
    """The pretrained model for the evaluate stage, conditioned on ``<|ok|>`` (as it loads) and
    unconditioned (``+cond:none``); none when it was not trained or not asked for."""
    spec = ctx.trained_spec("pretrain")
    if spec is None or not ctx.recipe.stages.pretrain.evaluate:
        return {}
    return {"pretrain": spec, "pretrain_uncond": f"{spec}+cond:none"}


def pretrain_section(ctx: RunContext) -> tuple[str, str] | None:
    """The report's section on the pretrain stage (None when it did not run): the corpus by
    control token and source, the scorer, the training, and how to load the model."""
    from collections import Counter
    from html import escape

    from cai.pipeline._events import EventLog

    path = ctx.path(CORPUS)
    ev = EventLog(ctx.path("events.jsonl")).finished().get("pretrain")
    if ev is None or ev.event != "done" or not path.exists():
        return None
    segs = list(read_jsonl(path, PretrainSegment))
    d = ev.detail
    tokens = Counter(s.control for s in segs)
    sources = Counter(f"{s.source.split(':')[0]} {s.control}" for s in segs)
    spec = ctx.run_spec("pretrain")
    rows = [
        ("corpus", str(d.get("corpus"))),
        ("scorer (refusal detector)", str(d.get("detector"))),
        ("segments (left out: undetermined)", f"{len(segs)} ({d.get('left_out')})"),
        *((f"token {t}", str(n)) for t, n in tokens.most_common()),
        *((f"source {k}", str(n)) for k, n in sorted(sources.items())),
        ("optimizer steps, final loss", f"{d.get('steps')}, {d.get('loss')}"),
        ("training seconds", str(d.get("train_seconds"))),
        ("conditioned spec (as loaded)", f"{spec} (+cond:{OK_TOKEN})"),
        ("unconditioned spec", f"{spec}+cond:none"),
        ("SFT starts from", ctx.recipe.stages.sft.base),
    ]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    note = (
        "<p>Each segment carries the control token the scorer chose (the rule is in "
        "<code>cai.pipeline._pretrain</code>); the evaluation above shows the model as "
        "<code>pretrain</code> (conditioned on <code>&lt;|ok|&gt;</code>) and "
        "<code>pretrain_uncond</code>.</p>"
    )
    return ("Constitutional pre-training", f"{note}<table>{body}</table>")
