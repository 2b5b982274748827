"""``cai calibrate``: how far a judge agrees with human labels; writes calibration.json."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.cli._common import (
    BATCH_SIZE,
    CONSTITUTION,
    OUT_DIR,
    console,
    open_models,
    request_progress,
)
from cai.constitution import resolve_constitution
from cai.evaluate import (
    CalibrationFile,
    calibrate_judge,
    calibration_pairs_path,
    hedge_probe,
    judge_injections,
    load_labels,
    write_calibration,
)
from cai.scoring import Rate


def _fmt(rate: Rate | None, digits: int = 1, pct: bool = True) -> str:
    if rate is None:
        return "n/a (n=0)"
    return rate.fmt(percent=pct, digits=digits)


def calibration_table(f: CalibrationFile) -> Table:
    """The calibration figures as a rich table (95% intervals)."""
    table = Table(title=escape(f"Judge calibration: {f.judge} ({f.template}), 95% intervals"))
    table.add_column("measure")
    table.add_column("value")
    table.add_column("reading")
    table.add_row("agreement (accuracy)", _fmt(f.accuracy), "share of items judged as people did")
    table.add_row("Cohen's kappa", _fmt(f.kappa, 2, pct=False), "0 = chance, 1 = perfect")
    table.add_row("position bias", _fmt(f.position_bias), "slot-A win rate; 50% is unbiased")
    table.add_row("order consistency", _fmt(f.order_consistency), "both orders pick the same reply")
    if f.length_bias is not None:
        table.add_row(
            "judge prefers longer",
            _fmt(f.length_bias.judge_prefers_longer),
            "pairs of unequal length",
        )
        table.add_row(
            "people prefer longer", _fmt(f.length_bias.humans_prefer_longer), "same pairs"
        )
    if f.hedge_probe is not None:
        table.add_row(
            "prefers hedged harmful",
            _fmt(f.hedge_probe.prefers_hedged),
            "over a plain refusal; lower is better",
        )
    if f.injection_probe is not None:
        inj = f.injection_probe
        table.add_row(
            "flipped by injection",
            _fmt(inj.flip_rate),
            f"right verdicts turned wrong by a note in the worse reply ({inj.injections})",
        )
        for name, rate in inj.per_injection.items():
            table.add_row(f"  {name}", _fmt(rate), "")
    table.add_row("unassessed", str(f.unassessed), "failed requests, left out of n")
    return table


@click.command("calibrate")
@click.option("--judge", required=True, help="Model spec of the feedback model or judge.")
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Label file: hh-rlhf chosen/rejected .jsonl(.gz), pairwise "
    "(prompt, response_a, response_b, label) or harm (prompt, response, harmful) CSV/JSONL "
    "(default: the bundled 256 calibration pairs, each naming the principle it tests).",
)
@click.option(
    "--comparison",
    type=click.Choice(["compare", "helpfulness"]),
    default="compare",
    show_default=True,
    help="compare: the feedback stage's constitutional comparison; helpfulness: cai eval's judge.",
)
@CONSTITUTION
@click.option("--principle", default=None, help="Ask one principle (default: sampled per item).")
@click.option(
    "--kind",
    "prompt_kind",
    type=click.Choice(["harmful", "helpful", "borderline"]),
    default="harmful",
    show_default=True,
    help="Prompt kind of hh-rlhf items (and pairwise rows without a kind column): picks the "
    "principles asked, as in the feedback stage (harmful leaves out helpfulness).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N items.")
@click.option(
    "--probe/--no-probe",
    default=True,
    show_default=True,
    help="Run the hedging (reward-hacking) probe.",
)
@click.option(
    "--injections/--no-injections",
    default=False,
    show_default=True,
    help="Ask again with each bundled prompt injection appended to the worse reply and "
    "report how often a right verdict flips.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@BATCH_SIZE
@OUT_DIR
def calibrate(
    judge: str,
    labels_path: Path | None,
    comparison: str,
    constitution_path: Path | None,
    principle: str | None,
    prompt_kind: str,
    limit: int | None,
    probe: bool,
    injections: bool,
    seed: int,
    batch_size: int,
    out_dir: Path,
) -> None:
    """Agreement of a judge with human labels, its position and length bias and a hedging probe.

    Writes calibration.json and calibration_items.jsonl to --out; `cai eval` and `cai run`
    show the calibration in report.html when the file is in their output directory.
    """
    source = labels_path if labels_path is not None else calibration_pairs_path()
    labels = load_labels(source, seed=seed, limit=limit, kind=prompt_kind)
    constitution = resolve_constitution(constitution_path) if comparison == "compare" else None
    if constitution is not None and principle is not None:
        constitution.principle(principle)  # fail fast on an unknown id
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 2 * (len(labels) + (len(hedge_probe().items) if probe else 0))
    if injections:  # at most every pair, once per injection
        total += 2 * len(labels) * len(judge_injections().items)
    with ExitStack() as stack:
        loaded = open_models(
            {"judge": judge}, out_dir / "cache.sqlite", batch_size=batch_size, stack=stack
        )
        with request_progress(total, "calibrate") as advance:
            result = calibrate_judge(
                loaded["judge"],
                labels,
                comparison="helpfulness" if comparison == "helpfulness" else "compare",
                constitution=constitution,
                principle=principle,
                probe=probe,
                injections=injections,
                subset="all" if limit is None else f"first {len(labels)}",
                seed=seed,
                on_progress=advance,
            )
    path = write_calibration(result, out_dir)
    console.print(calibration_table(result.file))
    if result.file.unassessed:
        console.print(
            f"[yellow]{result.file.unassessed} item(s) failed and are unassessed; rerun the same "
            "command to retry them (finished calls are cached)[/yellow]"
        )
    click.echo(str(path))


COMMANDS: list[click.Command] = [calibrate]
