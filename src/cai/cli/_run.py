"""``cai run``: the whole pipeline from a recipe."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click
from rich.table import Table

from cai.errors import InputError
from cai.pipeline import (
    STAGES,
    StageOutcome,
    console,
    evaluator_status,
    library_output_to,
    load_recipe,
    recipe_fields,
    run_pipeline,
)
from cai.scoring import read_run_calibration


def _epilog() -> str:
    lines = ["\b", "Stages: " + " -> ".join(STAGES), "", "\b", "Recipe keys (YAML, all optional):"]
    for key, default, doc in recipe_fields():
        lines.append(f"  {key} = {default}")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def instrument_lines(run_dir: Path) -> list[str]:
    """Which instruments behind the run's numbers are validated, and how well (plain text)."""
    cal = read_run_calibration(run_dir)
    if cal is None:
        return ["instruments: not calibrated in this run: every judge-made number is unvalidated"]
    lines = [f"instruments (calibrated on {cal.labels}, {cal.n} pairs, both orders):"]
    if cal.detector is not None:
        mark = "validated" if cal.detector.validated else "NOT VALIDATED"
        lines.append(f"  detector: {mark}: {cal.detector.reason}")
    for c in cal.judges:
        mark = "validated" if c.validation.validated else "NOT VALIDATED"
        lines.append(
            f"  {c.role} {c.spec} ({c.comparison}): {mark}: accuracy {c.accuracy.fmt()}, "
            f"kappa {c.kappa.fmt()}, slot A wins {c.position_bias.fmt()}, {c.seconds:.0f} s"
        )
        if not c.validation.validated:
            what = "win rates" if c.role == "judge" else "preference labels"
            lines.append(f"    its {what} are marked 'judge not validated', not results")
    return lines


_WORDS = ("reason", "error")
"""Detail keys whose text is shown in full (wrapped), however long."""


def _value(v: object) -> str | None:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and len(v) <= 40:
        return v
    return None


def stage_summary(detail: dict[str, object]) -> str:
    """A stage's detail as ``key value`` items for the end-of-run table: numbers, flags and
    short texts (one level of nesting as ``outer.inner``), reasons and errors in full; paths,
    lists and long texts are left to ``events.jsonl``. Items are separated by ``; `` so a
    narrow terminal wraps between words, never inside a figure."""
    items = []
    for key, v in detail.items():
        if key in _WORDS and isinstance(v, str):
            items.append(f"{key}: {v}")
        elif isinstance(v, dict):
            items += [
                f"{key}.{k} {shown}" for k, sub in v.items() if (shown := _value(sub)) is not None
            ]
        elif (shown := _value(v)) is not None:
            items.append(f"{key} {shown}")
    return "; ".join(items)


def _show(outcome: StageOutcome) -> None:
    colour = {"done": "green", "skipped": "yellow"}.get(outcome.status, "dim")
    console.print(
        f"[{colour}]{outcome.stage}: {outcome.status}[/{colour}] ({outcome.seconds:.0f} s)"
    )


@click.command("run", epilog=_epilog())
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory (default: runs/RECIPE_NAME). Rerun to resume.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Cap every prompt-set size (quick trial runs).",
)
@click.option(
    "--from",
    "from_stage",
    type=click.Choice(STAGES),
    default=None,
    help="Rerun from this stage (earlier outputs of it and later stages are archived).",
)
@click.option("--until", type=click.Choice(STAGES), default=None, help="Stop after this stage.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Shard every generation stage over Ray actors: a local instance, or the cluster at "
    "ADDRESS (auto, ray://HOST:10001).",
)
@click.option(
    "--ray-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Ray actors per model (default: the recipe's ray.workers).",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show library output (warnings, loading bars, trainer logs) here instead of in "
    "RUN_DIR/run.log.",
)
def run(
    recipe: Path | None,
    run_dir: Path | None,
    limit: int | None,
    from_stage: str | None,
    until: str | None,
    ray_address: str | None,
    ray_workers: int | None,
    verbose: bool,
) -> None:
    """Run the Constitutional AI pipeline: SL-CAI, SFT, AI feedback, DPO and evaluation.

    RECIPE is a YAML file (default: every role on the embedded model, recipes/default.yaml).
    """
    if recipe is not None and not recipe.exists():
        raise InputError(f"{recipe}: no such recipe file")
    rec = load_recipe(recipe)
    if ray_address is not None or ray_workers is not None:
        ray = rec.ray.model_copy(update={"enabled": True})
        if ray_address is not None:
            ray.address = None if ray_address == "local" else ray_address
        if ray_workers is not None:
            ray.workers = ray_workers
        rec = rec.model_copy(update={"ray": ray})
    out = run_dir or Path("runs") / rec.name
    log = out / "run.log"
    with nullcontext(False) if verbose else library_output_to(log) as quiet:
        if quiet:
            console.print(f"library output: {log} (--verbose shows it here)", markup=False)
        outcomes = run_pipeline(
            rec, out, limit=limit, from_stage=from_stage, until=until, on_stage=_show
        )
    table = Table(title=f"cai run {rec.name}")
    for col in ("stage", "status", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("detail (all of it: events.jsonl)", overflow="fold")
    for o in outcomes:
        table.add_row(o.stage, o.status, f"{o.seconds:.0f}", stage_summary(o.detail))
    console.print(table)
    for role, status in evaluator_status(out):
        console.print(f"{role}: {status}", markup=False, highlight=False)
    for line in instrument_lines(out):
        console.print(line, markup=False, highlight=False)
    report = out / "report.html"
    if report.exists():
        click.echo(str(report))


COMMANDS: list[click.Command] = [run]
