"""The ``redteam`` stage of ``cai run`` and its report section.

Owns: red-teaming the policy (``redteam/before``) and the trained model (``redteam/after``) with
the same attacker, budget and seed; replaying the attacks that broke the policy against the
trained model (``redteam/replay.json``); writing every successful attack to
``data/redteam_failures.jsonl``; resolving ``run:DIR/redteam`` to that file, so the next round
trains on it (``prompts.red_team: [run:DIR/redteam]``); the before-vs-after report section.
Must not know: how the search works inside (that is ``cai.redteam``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai.pipeline._context import RunContext, StageSkipped
from cai.pipeline._progress import request_progress
from cai.records import PromptRecord
from cai.redteam import (
    RedteamConfig,
    RedteamModels,
    RedteamSummary,
    compare_section,
    load_summary,
    replay,
    resolve_categories,
    resolve_styles,
    run_redteam,
)
from cai.scoring import Rate
from cai.store import load_prompts, write_json, write_prompts

FAILURES = "data/redteam_failures.jsonl"
"""Where the stage writes successful attacks, relative to the run directory."""


def resolve_source(source: str) -> str:
    """``run:DIR/redteam`` -> ``DIR/data/redteam_failures.jsonl``; any other source unchanged."""
    body = source.removeprefix("run:").rstrip("/")
    if source.startswith("run:") and body.endswith("/redteam"):
        return str(Path(body).parent / FAILURES)
    return source


def _config(ctx: RunContext) -> RedteamConfig:
    st = ctx.recipe.stages.redteam
    return RedteamConfig(
        budget=st.budget,
        batch_size=st.batch_size,
        styles=[s.id for s in resolve_styles(st.styles)],
        categories=[c.id for c in resolve_categories(st.categories)],
        seeds=st.seeds,
        seed=ctx.recipe.seed,
        similarity_threshold=st.similarity,
        embedder=st.embedder,
        target_max_new_tokens=st.max_new_tokens,
    )


def stage_redteam(ctx: RunContext) -> dict[str, Any]:
    """Red-team before and after training; export the failures; replay them on the new model."""
    st, models = ctx.recipe.stages.redteam, ctx.recipe.models
    if not st.enabled:
        raise StageSkipped("disabled in the recipe (stages.redteam.enabled: false)")
    cfg = _config(ctx)
    attacker = ctx.pool.get(models.attacker)
    judge = ctx.pool.get(st.judge, dtype="float32") if st.judge else None
    targets = {"before": models.policy}
    after = st.after or ctx.trained_spec("dpo") or ctx.trained_spec("sft")
    if after is not None:
        targets["after"] = after
    detail: dict[str, Any] = {}
    failures: dict[str, PromptRecord] = {}
    for name, spec in targets.items():
        rt = RedteamModels(ctx.pool.get(spec), attacker, judge)
        with request_progress(cfg.budget, f"redteam {name}") as advance:
            res = run_redteam(
                rt, cfg, ctx.path(f"redteam/{name}"), on_progress=lambda n: advance(n, 0)
            )
        for p in load_prompts(str(res.failures)):
            failures.setdefault(p.id, p)
        s = res.summary
        detail[name] = {"asr": s.asr.value, "n": s.asr.n, "successes": s.diversity.unique_successes}
    write_prompts(ctx.path(FAILURES), failures.values())
    detail["failures"] = len(failures)
    if after is not None:
        broke = load_prompts(str(ctx.path("redteam/before/failures.jsonl")))
        rate = replay(
            ctx.pool.get(after), broke, max_new_tokens=cfg.target_max_new_tokens, seed=cfg.seed
        )
        write_json(ctx.path("redteam/replay.json"), rate)
        detail["replay_asr_after"] = {"value": rate.value, "n": rate.n}
    else:
        detail["after"] = "no trained model yet: only the policy was red-teamed"
    return detail


def redteam_section(ctx: RunContext) -> tuple[str, str] | None:
    """('Red-teaming', escaped HTML) when the stage has run, else None."""
    root = ctx.path("redteam")
    summaries: dict[str, RedteamSummary] = {}
    for name in ("before", "after"):
        if (root / name / "summary.json").exists():
            summaries[name] = load_summary(root / name)
    if not summaries:
        return None
    path = root / "replay.json"
    rate = Rate.model_validate_json(path.read_bytes()) if path.exists() else None
    html = compare_section(summaries, str(ctx.run_dir), rate)
    return ("Red-teaming: attack success before vs after training", html)
