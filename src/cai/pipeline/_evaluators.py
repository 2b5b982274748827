"""The evaluator-training stages of ``cai run``: the critic and the feedback model learn their
jobs from constitutional demonstrations before the run uses them.

Owns: turning the demonstration files into training data (the critic's compact SL-CAI chat
with both assistant turns; for the feedback model the labelled pairs of a reward probe, or with
``method: lora`` its comparison chat answered with a letter), the seeded sample, the cross-run
cache (``<cai cache>/adapters/``, keyed by demonstrations, base model, settings and seed) and
which spec each role then resolves to (``run:`` for an adapter, ``probe:`` for a probe).
Must not know: how training, critique or comparison work inside; it renders through
``cai.critique`` and ``cai.scoring`` and trains through ``cai.train``.

The small embedded model cannot critique, revise or judge by prompting (it ignores
instructions and sits at chance as a judge); a LoRA adapter trained on a few hundred worked
demonstrations, principle in the input, gives the critic the format and the boundary. A letter-
answering adapter did not learn the comparison in a CPU's budget, so the feedback model is by
default a reward probe: a linear head on the frozen model's hidden states over each reply.
The demonstrations train the evaluators only: the policy learns from what the trained critic
and feedback model produce on other prompts.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cai.backends import cache_root, parse_spec, resolve_spec
from cai.backends._probe import ProbeFile
from cai.constitution import (
    ComparisonDemonstration,
    Constitution,
    bundled_demonstrations_path,
    load_comparison_demonstrations,
    load_critique_demonstrations,
    resolve_constitution,
)
from cai.critique import demonstration_chat, sl_cai_template
from cai.pipeline._context import RunContext, StageSkipped
from cai.pipeline._models import BATCHED_PREFIXES
from cai.pipeline._recipe import EvaluatorTraining, FeedbackTraining
from cai.records import SFTExample
from cai.scoring import (
    compare_template,
    comparison_chat,
    comparison_pattern,
    reward_probe_template,
)
from cai.store import write_records
from cai.train import META, DataFile, TrainJob, TrainResult, read_result, train
from cai.train._data import sha256_file

CRITIC_TEMPLATE = "sl_cai_compact"
"""The SL-CAI template a trained critic is trained on and then sent."""
CACHE_FORMAT = 1
"""Bump when the training chats change in a way the key below does not see."""


def _demo_constitution(ctx: RunContext, st: EvaluatorTraining) -> Constitution:
    """The bundled demonstrations are written for the default pack; a user's file for the run's
    constitution. Principles render from it, so training sees the texts they were written for."""
    return resolve_constitution(None) if st.demonstrations is None else ctx.constitution


def _sample(rows: list[Any], limit: int | None, seed: int) -> list[Any]:
    train = [r for r in rows if r.split == "train"]
    if limit is None or limit >= len(train):
        return train
    picked = random.Random(seed).sample(range(len(train)), limit)
    return [train[i] for i in sorted(picked)]


def _limit(ctx: RunContext, st: EvaluatorTraining) -> int | None:
    """The recipe's sample size, capped by ``--limit``."""
    if ctx.limit is None:
        return st.limit
    return ctx.limit if st.limit is None else min(st.limit, ctx.limit)


def _base_identity(spec: str) -> dict[str, Any]:
    """What identifies a base model's weights for the cache: its resolved path, and for a local
    directory its config and the names and sizes of its weight files."""
    src = resolve_spec(spec)
    out: dict[str, Any] = {"spec": spec, "model": src.model, "revision": src.revision}
    local = Path(src.model)
    if local.is_dir():
        cfg = local / "config.json"
        out["config"] = hashlib.sha256(cfg.read_bytes()).hexdigest() if cfg.exists() else None
        out["weights"] = sorted(
            (p.name, p.stat().st_size) for p in local.iterdir() if p.suffix == ".safetensors"
        )
    if src.adapter is not None:
        meta = Path(src.adapter) / META
        out["adapter"] = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else None
    return out


def _train_evaluator(
    ctx: RunContext,
    role: str,
    base: str,
    st: EvaluatorTraining,
    examples: list[SFTExample],
    source: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Train (or take from the cache) the LoRA adapter for ``role``; the stage's detail dict."""
    data = ctx.path(f"data/{role}_demonstrations.jsonl")
    write_records(data, examples)
    args = st.trainer_args(str(ctx.path(f"models/.{role}-checkpoints")), ctx.recipe.seed)
    args |= {"save_strategy": "steps", "save_steps": st.checkpoint_steps, "save_total_limit": 1}
    args |= extra
    out = ctx.path(f"models/{role}")
    job = TrainJob(method="sft", base_model=base, data=[str(data)], out_dir=str(out), config=args)
    config = {k: v for k, v in args.items() if k != "output_dir"}
    return _cached(
        ctx, role, base, data, config, lambda: train(job, st.num_processes, st.accelerate_config)
    ) | {"demonstrations": len(examples), "source": source}


def _cached(
    ctx: RunContext,
    role: str,
    base: str,
    data: Path,
    config: dict[str, Any],
    fit: Callable[[], TrainResult],
) -> dict[str, Any]:
    """Copy ``role``'s model from the cache when one was trained from the same data, base,
    settings and seed; otherwise ``fit`` it into ``models/ROLE`` and cache it."""
    key_src = {
        "format": CACHE_FORMAT,
        "role": role,
        "base": _base_identity(base),
        "data": hashlib.sha256(data.read_bytes()).hexdigest(),
        "config": config,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_root() / "adapters" / f"{role}-{key}"
    out = ctx.path(f"models/{role}")
    detail: dict[str, Any] = {"base": base, "cache_key": key}
    if (cached / META).is_file():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(cached, out)
        done = read_result(out)
        return detail | {"cached": True, "steps": done.steps, "loss": done.final_loss}
    ctx.pool.release(ctx.run_spec(role))
    ctx.pool.release(f"probe:{out}")
    res = fit()
    tmp = cached.with_name(f".{cached.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp)
    tmp.rename(cached)
    return detail | {
        "cached": False,
        "steps": res.steps,
        "loss": res.final_loss,
        "train_seconds": res.seconds,
        "resumed_from": res.resumed_from,
    }


def _trainable(ctx: RunContext, role: str, spec: str, st: EvaluatorTraining) -> None:
    """StageSkipped, with the reason the report shows, when this role gets no training."""
    if not st.enabled:
        raise StageSkipped(f"off in the recipe: the {role} is {spec} as given, untrained")
    if parse_spec(spec)[0] not in BATCHED_PREFIXES:
        raise StageSkipped(
            f"models.{role} is {spec}, not a local transformers model: used as given, untrained"
        )


def stage_train_critic(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.train_critic
    base = ctx.recipe.models.critic
    _trainable(ctx, "critic", base, st)
    constitution = _demo_constitution(ctx, st)
    demos = load_critique_demonstrations(st.demonstrations, constitution=constitution)
    picked = _sample(demos, _limit(ctx, st), ctx.recipe.seed)
    examples = [
        SFTExample(id=d.id, messages=demonstration_chat(constitution, d, CRITIC_TEMPLATE))
        for d in picked
    ]
    source = st.demonstrations or str(bundled_demonstrations_path("critique"))
    detail = _train_evaluator(
        ctx, "critic", base, st, examples, source, {"all_assistant_turns": True}
    )
    return detail | {"template": sl_cai_template(CRITIC_TEMPLATE).id}


def stage_train_feedback(ctx: RunContext) -> dict[str, Any]:
    st = ctx.recipe.stages.train_feedback
    base = ctx.recipe.models.feedback[0]
    _trainable(ctx, "feedback", base, st)
    constitution = _demo_constitution(ctx, st)
    demos = load_comparison_demonstrations(st.demonstrations, constitution=constitution)
    picked = _sample(demos, _limit(ctx, st), ctx.recipe.seed)
    source = st.demonstrations or str(bundled_demonstrations_path("comparison"))
    slot_a = sum(d.label == "a" for d in picked) / len(picked)
    if st.method == "lora":
        examples = [SFTExample(id=d.id, messages=comparison_chat(constitution, d)) for d in picked]
        detail = _train_evaluator(ctx, "feedback", base, st, examples, source, {})
        return detail | {
            "method": "lora",
            "template": compare_template().id,
            "label_a_share": slot_a,
        }
    return _train_probe(ctx, base, st, constitution, picked, source) | {"label_a_share": slot_a}


def _train_probe(
    ctx: RunContext,
    base: str,
    st: FeedbackTraining,
    constitution: Constitution,
    picked: list[ComparisonDemonstration],
    source: str,
) -> dict[str, Any]:
    """The feedback model as a reward probe on the comparison demonstrations."""
    from cai.train.probe import ProbeConfig, ProbePair, train_reward_probe

    data = ctx.path("data/feedback_demonstrations.jsonl")
    write_records(data, picked)
    pairs = [
        ProbePair(
            question=constitution.principle(d.principle_id).compare,
            prompt=d.prompt,
            response_a=d.response_a,
            response_b=d.response_b,
            a_better=d.label == "a",
        )
        for d in picked
    ]
    cfg = ProbeConfig(
        depths=tuple(st.probe_depths),
        l2=tuple(st.probe_l2),
        max_length=st.max_length,
        seed=ctx.recipe.seed,
    )
    tpl = reward_probe_template()
    user_turn = tpl.parts["user_turn"]
    pattern = comparison_pattern()
    config = {"method": "probe", **asdict(cfg), "user_turn": user_turn, "pattern": pattern}
    out = ctx.path("models/feedback")
    file = DataFile(path=str(data), sha256=sha256_file(data), records=len(picked))

    def fit() -> TrainResult:
        return train_reward_probe(
            base, pairs, out, cfg, user_turn=user_turn, request_pattern=pattern, data=[file]
        )

    detail = _cached(ctx, "feedback", base, data, config, fit)
    probe = ProbeFile.read(out)
    return detail | {
        "method": "probe",
        "demonstrations": len(picked),
        "source": source,
        "template": tpl.id,
        "layer": probe.layer,
        "cv_accuracy": probe.fit["chosen"]["cv_accuracy"],
        "l2": probe.fit["chosen"]["l2"],
    }


def critic_spec(ctx: RunContext) -> str:
    """The critic the critique stage uses: the trained one once trained, else the recipe's."""
    return ctx.trained_spec("critic") or ctx.recipe.models.critic


def feedback_specs(ctx: RunContext) -> list[str]:
    """The feedback models: the trained one replaces the first once trained."""
    specs = list(ctx.recipe.models.feedback)
    trained = ctx.trained_spec("feedback")
    return [trained, *specs[1:]] if trained else specs


def critic_copy_sources(ctx: RunContext) -> tuple[str, ...]:
    """The trained critic's demonstration revisions: a revision that copies one is degenerate."""
    if ctx.trained_spec("critic") is None:
        return ()
    st = ctx.recipe.stages.train_critic
    demos = load_critique_demonstrations(st.demonstrations)
    return tuple(d.revision for d in demos)
