"""``cai critique``: the SL-CAI stage on a prompt set."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
from rich.table import Table

from cai.backends import get_embedder
from cai.cli._common import (
    BATCH_SIZE,
    COLUMN,
    CONSTITUTION,
    OUT_DIR,
    PROMPTS,
    console,
    load_prompt_set,
    open_models,
    request_progress,
)
from cai.constitution import Router, resolve_constitution
from cai.critique import CritiqueConfig, run_critique_stage
from cai.errors import BackendError


@click.command("critique")
@PROMPTS
@COLUMN
@click.option(
    "--split",
    type=click.Choice(["train", "heldout"]),
    default=None,
    help="Use only this split of the prompt set.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N prompts only.")
@CONSTITUTION
@click.option("--policy", default="embedded", show_default=True, help="Model spec of the policy.")
@click.option("--critic", default="embedded", show_default=True, help="Model spec of the critic.")
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Critique-revision rounds per prompt.",
)
@click.option(
    "--escalation/--no-escalation",
    default=False,
    show_default=True,
    help="Round k draws its principle from level k of the constitution's 'escalation' "
    "(rising specificity or tier; the last level repeats).",
)
@click.option(
    "--stop-early/--no-stop-early",
    default=False,
    show_default=True,
    help="Stop a prompt's rounds when the critique finds nothing or the revision is unchanged "
    "(recorded as stopped_early).",
)
@click.option(
    "--few-shot",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Worked examples from the constitution shown to the critic.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=8), default=160, show_default=True)
@click.option(
    "--repetition-penalty",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Penalty on repeated tokens for critiques and revisions.",
)
@click.option(
    "--router",
    type=click.Choice(["minilm", "hash"]),
    default=None,
    help="Route each prompt (topics, risk) with this embedder and sample principles only from "
    "the layers and directions its route admits (default: flat sampling).",
)
@BATCH_SIZE
@OUT_DIR
def critique(
    prompts_src: str,
    column: str | None,
    split: str | None,
    limit: int | None,
    constitution_path: Path | None,
    policy: str,
    critic: str,
    rounds: int,
    escalation: bool,
    stop_early: bool,
    few_shot: int,
    seed: int,
    max_new_tokens: int,
    repetition_penalty: float,
    router: str | None,
    batch_size: int,
    out_dir: Path,
) -> None:
    """Draft, critique and revise: write sl_cai.jsonl (trace) and sft.jsonl (messages)."""
    prompts = load_prompt_set(prompts_src, column=column, split=split, limit=limit)
    constitution = resolve_constitution(constitution_path)
    cfg = CritiqueConfig.from_budget(
        max_new_tokens,
        rounds=rounds,
        few_shot=few_shot,
        seed=seed,
        repetition_penalty=repetition_penalty,
        escalation=escalation,
        stop_early=stop_early,
    )
    routing = None
    if router is not None:
        embedder = get_embedder(router)
        routing = Router(embedder.embed, embed_name=embedder.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        models = open_models(
            {"policy": policy, "critic": critic},
            out_dir / "cache.sqlite",
            batch_size=batch_size,
            stack=stack,
        )
        total = len(prompts) * (1 + 2 * rounds)
        with request_progress(total, "critique") as advance:
            summary = run_critique_stage(
                prompts,
                constitution,
                models["policy"],
                models["critic"],
                out_dir,
                cfg,
                on_progress=advance,
                router=routing,
            )
    table = Table(title="SL-CAI stage", show_header=False)
    for key in (
        "prompts",
        "already_done",
        "written",
        "sft_examples",
        "failed",
        "completion_tokens",
        "seconds",
    ):
        table.add_row(key, str(getattr(summary, key)))
    for reason, n in summary.degenerate.items():
        table.add_row(f"degenerate: {reason}", str(n))
    for reason, n in summary.stopped_early.items():
        table.add_row(f"stopped early: {reason}", str(n))
    console.print(table)
    for line in summary.failures[:10]:
        console.print(f"[red]failed[/red] {line}")
    click.echo(str(out_dir / "sl_cai.jsonl"))
    if summary.failed:
        raise BackendError(
            f"{summary.failed} prompt(s) failed (first: {summary.failures[0]}); "
            f"rerun the same command to retry them, finished records are kept"
        )


COMMANDS: list[click.Command] = [critique]
