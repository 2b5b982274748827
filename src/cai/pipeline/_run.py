"""Run the stages of a recipe in order, resuming where an earlier run stopped.

A stage whose last event in ``events.jsonl`` is done or skipped is not run again; inside a stage
the workflows skip finished records and the response cache answers repeated model calls, so an
interrupted run picks up at the first unfinished record. ``--from STAGE`` moves that stage's
outputs and every later stage's into ``archive/`` (nothing is deleted) and reruns them.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.constitution import resolve_constitution
from cai.errors import BackendError, CaiError, InputError
from cai.oversight import load_oversight_config, require_checkpoint
from cai.pipeline._context import OUTPUTS, STAGES, RunContext, StageSkipped
from cai.pipeline._events import EventLog
from cai.pipeline._models import ModelPool
from cai.pipeline._recipe import Recipe
from cai.pipeline._stages import STAGE_FUNCS
from cai.store import ResponseCache, write_json


@dataclass
class StageOutcome:
    """What happened to one stage in this invocation."""

    stage: str
    status: str
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


def _archive(run_dir: Path, stages: list[str]) -> Path | None:
    dest = run_dir / "archive" / time.strftime("%Y%m%d-%H%M%S")
    moved = False
    for stage in stages:
        for rel in OUTPUTS[stage]:
            src = run_dir / rel
            if src.exists():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(target))
                moved = True
    return dest if moved else None


def run_pipeline(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    limit: int | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> list[StageOutcome]:
    """Run (or resume) every stage; returns one outcome per stage."""
    for name in (from_stage, until):
        if name is not None and name not in STAGES:
            raise InputError(f"unknown stage {name!r}: the stages are {', '.join(STAGES)}")
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "recipe.json", recipe)
    log = EventLog(out / "events.jsonl")
    if from_stage is not None:
        rerun = list(STAGES[STAGES.index(from_stage) :])
        where = _archive(out, rerun)
        for s in rerun:
            log.append(s, "reset", archived_to=str(where) if where else None)
    last = STAGES.index(until) if until else len(STAGES) - 1
    cache = ResponseCache(out / "cache.sqlite")
    pool = ModelPool(cache, batch_size=recipe.generation.batch_size, ray=recipe.ray)
    ctx = RunContext(recipe, out, resolve_constitution(recipe.constitution), pool, limit)
    outcomes: list[StageOutcome] = []
    try:
        finished = log.finished()
        for stage in STAGES[: last + 1]:
            if stage in finished:
                ev = finished[stage]
                outcome = StageOutcome(stage, f"{ev.event} earlier", 0.0, ev.detail)
            else:
                if stage in _TRAINING:
                    pool.close()  # training needs the memory; models reopen when next asked for
                outcome = _run_stage(ctx, log, stage)
                pool.forget()  # stored key/values serve within a stage, not across stages
                release_memory()
            outcomes.append(outcome)
            if on_stage:
                on_stage(outcome)
    finally:
        pool.close()
        cache.close()
    return outcomes


_TRAINING = frozenset({"train_critic", "train_feedback", "pretrain", "sft", "dpo"})
"""Stages that fine-tune a model: no inference model is held open while they run."""


def release_memory() -> None:
    """Hand memory a finished stage freed back to the system, not only to the allocator.

    glibc keeps freed heap pages for reuse, so after a training stage the process stayed
    ~2 GiB larger than what it held, and the next stage's model and batches came on top of that
    (the default recipe peaked in ``pairs``, right after SFT). ``malloc_trim`` returns them;
    elsewhere (no glibc) this only collects garbage.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        # musl and other libcs have no malloc_trim: nothing to hand back there.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _run_stage(ctx: RunContext, log: EventLog, stage: str) -> StageOutcome:
    log.append(stage, "start")
    start = time.perf_counter()
    try:
        if ctx.recipe.oversight is not None:  # mandatory human checkpoints gate training stages
            require_checkpoint(ctx.run_dir, load_oversight_config(ctx.recipe.oversight), stage)
        detail = STAGE_FUNCS[stage](ctx)
    except StageSkipped as exc:
        secs = round(time.perf_counter() - start, 2)
        log.append(stage, "skipped", reason=str(exc), seconds=secs)
        return StageOutcome(stage, "skipped", secs, {"reason": str(exc)})
    except CaiError as exc:
        log.append(stage, "failed", error=str(exc), seconds=round(time.perf_counter() - start, 2))
        raise
    except RuntimeError as exc:
        log.append(stage, "failed", error=str(exc), seconds=round(time.perf_counter() - start, 2))
        raise BackendError(f"stage {stage}: {exc}") from exc
    secs = round(time.perf_counter() - start, 2)
    log.append(stage, "done", seconds=secs, **detail)
    return StageOutcome(stage, "done", secs, detail)
