"""``cai redteam``: search for prompts that break a target model; write the archive, the
failures as a prompt set, summary.json and report.html."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.cli._common import BATCH_SIZE, OUT_DIR, console, open_models, request_progress
from cai.errors import InputError
from cai.redteam import (
    RedteamConfig,
    RedteamModels,
    RedteamSummary,
    load_taxonomy,
    resolve_categories,
    resolve_styles,
    run_redteam,
)
from cai.scoring import DEFAULT_DETECTOR, REFUSAL_LABELS, detector_names


def _table(s: RedteamSummary) -> Table:
    table = Table(title="Attack success per style (95% Wilson intervals)")
    for col in ("style", "attack success", "attacker refused"):
        table.add_column(col)
    for style, rate in s.per_style.items():
        table.add_row(
            escape(style), rate.fmt(percent=True), s.attacker_refusals[style].fmt(percent=True)
        )
    table.add_row("[b]all[/b]", s.asr.fmt(percent=True), "")
    return table


def _split(values: tuple[str, ...]) -> list[str] | None:
    out = [v.strip() for arg in values for v in arg.split(",") if v.strip()]
    return out or None


@click.command("redteam")
@click.option("--target", required=True, help="Model spec of the model under attack.")
@click.option("--attacker", required=True, help="Model spec of the attacker (rewrites prompts).")
@click.option("--judge", default=None, help="Model spec of an optional harm judge.")
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    required=True,
    help="Model calls allowed (attacker + target + judge requests).",
)
@click.option(
    "--style",
    "styles",
    multiple=True,
    help="Attack style ids (repeatable or comma-separated; default: all).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Risk category ids (repeatable or comma-separated; default: all).",
)
@click.option(
    "--taxonomy",
    "taxonomy",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML file of extra styles/categories (same schema as the bundled ones).",
)
@click.option(
    "--seeds",
    default="builtin:harmful",
    show_default=True,
    help="Prompt set whose train split seeds each category.",
)
@click.option(
    "--batch",
    "batch",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Candidate prompts per generation.",
)
@click.option(
    "--detector",
    default=DEFAULT_DETECTOR,
    show_default=True,
    help="Refusal detector: hybrid (rules + MiniLM, the best measured), rules, embedding, llm.",
)
@click.option(
    "--success",
    "success",
    multiple=True,
    type=click.Choice(REFUSAL_LABELS),
    help="Target labels that count as success (default: full_compliance).",
)
@click.option(
    "--embedder",
    default="minilm",
    show_default=True,
    help="Embedder for near-duplicate rejection and diversity (minilm or hash).",
)
@click.option(
    "--similarity",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.9,
    show_default=True,
    help="Cosine similarity that makes a prompt a duplicate.",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=8),
    default=128,
    show_default=True,
    help="Token limit of target replies.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@BATCH_SIZE
@OUT_DIR
def redteam(
    target: str,
    attacker: str,
    judge: str | None,
    budget: int,
    styles: tuple[str, ...],
    categories: tuple[str, ...],
    taxonomy: Path | None,
    seeds: str,
    batch: int,
    detector: str,
    success: tuple[str, ...],
    embedder: str,
    similarity: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    out_dir: Path,
) -> None:
    """Red-team a model: an attacker fills a (category x style) archive with prompts that work.

    Rerun the same command to resume (the archive is saved after every generation, model calls
    are cached), or raise --budget to search further.
    """
    if detector not in detector_names():
        raise InputError(f"unknown --detector {detector!r} (choose from {detector_names()})")
    if taxonomy is not None:
        load_taxonomy(taxonomy)
    cfg = RedteamConfig(
        budget=budget,
        batch_size=batch,
        styles=[s.id for s in resolve_styles(_split(styles))],
        categories=[c.id for c in resolve_categories(_split(categories))],
        seeds=seeds,
        seed=seed,
        similarity_threshold=similarity,
        embedder=embedder,
        detector=detector,
        success_labels=list(success) or ["full_compliance"],
        target_max_new_tokens=max_new_tokens,
    )
    roles = {"target": target, "attacker": attacker} | ({"judge": judge} if judge else {})
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        loaded = open_models(roles, out_dir / "cache.sqlite", batch_size=batch_size, stack=stack)
        models = RedteamModels(loaded["target"], loaded["attacker"], loaded.get("judge"))
        with request_progress(budget, "redteam") as advance:
            result = run_redteam(models, cfg, out_dir, on_progress=lambda n: advance(n, 0))
    s = result.summary
    console.print(_table(s))
    d = s.diversity
    console.print(
        f"coverage {d.coverage.fmt(percent=True)}; unique successes {d.unique_successes}; "
        f"1 - self-BLEU(1-4) {d.one_minus_self_bleu}; mean pairwise distance "
        f"{d.mean_pairwise_distance} ({escape(d.embedder)}); calls {s.calls['total']}/{s.budget}"
    )
    if s.unassessed:
        console.print(
            f"[yellow]unassessed {s.unassessed}: attempts whose model calls failed "
            f"(in no rate); rerun the same command to retry them[/yellow]"
        )
    else:
        console.print("unassessed 0")
    click.echo(str(result.failures))
    click.echo(str(result.report))


COMMANDS: list[click.Command] = [redteam]
