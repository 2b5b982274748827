"""``cai oversee RUN_DIR``: route a run's records through the oversight chain, fill the queue."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.cli._common import BATCH_SIZE, CONSTITUTION, console, open_models, request_progress
from cai.constitution import resolve_constitution
from cai.errors import InputError
from cai.oversight import (
    STORE_FILE,
    OversightMetrics,
    VerdictStore,
    export_reviewed,
    load_items,
    load_oversight_config,
    oversee,
    oversight_metrics,
)
from cai.scoring import Rate

METRICS_FILE = "oversight_metrics.json"


def run_constitution(run_dir: Path, override: Path | None) -> str | None:
    """The constitution a run used (from its recipe.json), unless one is given."""
    if override is not None:
        return str(override)
    recipe = run_dir / "recipe.json"
    if recipe.exists():
        value = json.loads(recipe.read_text()).get("constitution")
        return str(value) if value else None
    return None


def fmt(rate: Rate) -> str:
    """'12.5% [8.1, 18.0] n=40', or 'n/a (n=0)'."""
    return rate.fmt(percent=True)


def metrics_table(m: OversightMetrics) -> Table:
    table = Table(title=f"Oversight levels vs human verdicts ({m.reviewed} reviewed, 95% CI)")
    for col in ("level", "kind", "accuracy vs humans", "abstained", "escalated by it", "judge"):
        table.add_column(col)
    for lv in m.levels:
        table.add_row(
            escape(lv.level),
            lv.kind,
            fmt(lv.accuracy),
            str(lv.abstained),
            fmt(lv.escalation_rate),
            "validated" if lv.validation.validated else "not validated",
        )
    return table


@click.command("oversee")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Oversight config YAML (default: source label + rule detector, 5% spot checks).",
)
@CONSTITUTION
@click.option("--redo", is_flag=True, help="Route every item again (default: only new items).")
@BATCH_SIZE
def oversee_(
    run_dir: Path,
    config_path: Path | None,
    constitution_path: Path | None,
    redo: bool,
    batch_size: int,
) -> None:
    """Apply the oversight chain to a run's records and fill the human review queue.

    Reads the run's preferences, SL-CAI traces and red-team results (whichever exist), runs the
    AI levels, escalates items by the config's rules plus random spot checks, stores everything
    in RUN_DIR/oversight.sqlite, rewrites data/preferences.reviewed.jsonl and writes
    RUN_DIR/oversight_metrics.json. Review the queue with `cai serve RUN_DIR`.
    """
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    cfg = load_oversight_config(config_path)
    constitution = resolve_constitution(run_constitution(run_dir, constitution_path))
    n_items = len(load_items(run_dir, cfg.sources, constitution))
    if n_items == 0:
        files = ", ".join(f for group in cfg.sources.values() for f in group)
        raise InputError(f"{run_dir}: none of the oversight sources exist ({files})")
    specs = {s: s for lv in cfg.ai_levels for s in ([lv.model] if lv.model else []) + lv.members}
    with ExitStack() as stack:
        backends = open_models(specs, run_dir / "cache.sqlite", batch_size=batch_size, stack=stack)
        with request_progress(n_items, "oversee") as advance:
            summary = oversee(
                run_dir,
                cfg,
                constitution,
                backends.__getitem__,
                redo=redo,
                on_progress=lambda n: advance(n, 0),
            )
    with VerdictStore(run_dir / STORE_FILE) as store:
        reviewed = export_reviewed(run_dir, store)
        metrics = oversight_metrics(store, cfg)
    out = run_dir / METRICS_FILE
    out.write_text(metrics.model_dump_json(indent=2) + "\n")
    sources = ", ".join(f"{k}: {v}" for k, v in summary.per_source.items())
    console.print(
        f"{summary.items} items ({escape(sources)}); routed now {summary.routed}: "
        f"{summary.escalated} escalated, {summary.spot_checks} spot checks; "
        f"human queue {summary.queue}"
    )
    if summary.reasons:
        console.print("rules fired: " + ", ".join(f"{k} {v}" for k, v in summary.reasons.items()))
    console.print(f"escalation rate {fmt(metrics.escalation_rate)}")
    console.print(metrics_table(metrics))
    console.print(
        f"estimated error rate of unseen items {fmt(metrics.unseen_error_rate)} "
        f"({metrics.unseen_items} items no human saw)"
    )
    click.echo(str(run_dir / STORE_FILE))
    click.echo(str(out))
    if reviewed is not None:
        click.echo(str(reviewed))


COMMANDS: list[click.Command] = [oversee_]
