"""``cai pairs`` and ``cai feedback``: sample response pairs, then label them with AI feedback."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
from rich.table import Table

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
from cai.constitution import resolve_constitution
from cai.errors import BackendError
from cai.feedback import (
    FILES,
    FeedbackConfig,
    FeedbackSummary,
    describe_rate,
    load_pairs,
    run_feedback_stage,
    run_pairs_stage,
)
from cai.records import SamplingParams


def _fail_if_failures(failed: int, failures: list[str], what: str) -> None:
    for line in failures[:10]:
        console.print(f"[red]failed[/red] {line}")
    if failed:
        raise BackendError(
            f"{failed} {what}(s) failed (first: {failures[0]}); "
            f"rerun the same command to retry them, finished records are kept"
        )


@click.command("pairs")
@PROMPTS
@COLUMN
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N prompts only.")
@click.option("--policy", default="embedded", show_default=True, help="Model spec of the policy.")
@click.option(
    "--temperature", type=click.FloatRange(min=0.0, min_open=True), default=0.8, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds are SEED and SEED+1.")
@click.option("--max-new-tokens", type=click.IntRange(min=8), default=160, show_default=True)
@BATCH_SIZE
@OUT_DIR
def pairs(
    prompts_src: str,
    column: str | None,
    limit: int | None,
    policy: str,
    temperature: float,
    seed: int,
    max_new_tokens: int,
    batch_size: int,
    out_dir: Path,
) -> None:
    """Sample the policy twice per prompt: write pairs.jsonl for `cai feedback`."""
    prompts = load_prompt_set(prompts_src, column=column, limit=limit)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        models = open_models(
            {"policy": policy}, out_dir / "cache.sqlite", batch_size=batch_size, stack=stack
        )
        with request_progress(2 * len(prompts), "pairs") as advance:
            summary = run_pairs_stage(
                prompts, models["policy"], out_dir, params, on_progress=advance
            )
    table = Table(title="pair sampling", show_header=False)
    for key in ("prompts", "already_done", "written", "identical", "failed", "seconds"):
        table.add_row(key, str(getattr(summary, key)))
    console.print(table)
    click.echo(str(out_dir / "pairs.jsonl"))
    _fail_if_failures(summary.failed, summary.failures, "prompt")


@click.command("feedback")
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(path_type=Path),
    required=True,
    help="JSONL of PairRecords, or of objects with prompt, response_a and response_b.",
)
@CONSTITUTION
@click.option(
    "--feedback",
    "feedback_specs",
    multiple=True,
    default=("embedded",),
    show_default=True,
    help="Model spec of a feedback model; repeat for an ensemble of models.",
)
@click.option(
    "--principles-per-pair",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Principles asked per pair (more than one: an ensemble, combined by the mean).",
)
@click.option("--cot", is_flag=True, help="Reason step by step before answering.")
@click.option(
    "--few-shot",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worked comparisons built from the constitution's examples.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Principle sampling seed.")
@click.option(
    "--tie-threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Orders that pick different replies and differ by more than this are a tie.",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 0.5),
    default=0.05,
    show_default=True,
    help="A soft label closer than this to 0.5 is a tie.",
)
@BATCH_SIZE
@OUT_DIR
def feedback(
    pairs_path: Path,
    constitution_path: Path | None,
    feedback_specs: tuple[str, ...],
    principles_per_pair: int,
    cot: bool,
    few_shot: int,
    seed: int,
    tie_threshold: float,
    min_confidence: float,
    batch_size: int,
    out_dir: Path,
) -> None:
    """Label pairs with AI feedback (both orders): write preferences.jsonl and a bias report."""
    pairs = load_pairs(pairs_path)
    constitution = resolve_constitution(constitution_path)
    specs = list(dict.fromkeys(feedback_specs))
    cfg = FeedbackConfig(
        principles_per_pair=principles_per_pair,
        seed=seed,
        cot=cot,
        few_shot=few_shot,
        tie_threshold=tie_threshold,
        min_confidence=min_confidence,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        roles = {f"feedback{i}": spec for i, spec in enumerate(specs)}
        models = open_models(roles, out_dir / "cache.sqlite", batch_size=batch_size, stack=stack)
        total = len(pairs) * principles_per_pair * len(specs) * 2 * (2 if cot else 1)
        with request_progress(total, "feedback") as advance:
            summary = run_feedback_stage(
                pairs, constitution, list(models.values()), out_dir, cfg, on_progress=advance
            )
    console.print(_table(summary))
    if summary.stats.biased():
        console.print(
            "[yellow]the feedback model prefers one slot more than chance allows; labels are "
            "order-averaged, and pairs whose two orders disagree are ties[/yellow]"
        )
    click.echo(str(out_dir / FILES["preferences"]))
    _fail_if_failures(summary.failed, summary.failures, "pair")


def _table(summary: FeedbackSummary) -> Table:
    table = Table(title="AI feedback", show_header=False)
    for key in ("pairs", "already_done", "identical", "labelled", "ties", "failed", "seconds"):
        table.add_row(key, str(getattr(summary, key)))
    for reason, n in summary.ties_by_reason.items():
        table.add_row(f"ties: {reason}", str(n))
    stats = summary.stats
    table.add_row("position bias (slot A wins)", describe_rate(stats.position_bias))
    for model, rate in stats.position_bias_by_model.items():
        table.add_row(f"  slot A wins: {model}", describe_rate(rate))
    table.add_row("order consistency", describe_rate(stats.order_consistency))
    for pid, rate in stats.principle_agreement.items():
        table.add_row(f"agreement: {pid}", describe_rate(rate))
    for model, rate in stats.model_agreement.items():
        table.add_row(f"agreement: {model}", describe_rate(rate))
    return table


COMMANDS: list[click.Command] = [pairs, feedback]
