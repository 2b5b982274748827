"""``cai steer``: fit constitutional steering vectors, and measure how well they separate.

``cai steer fit`` writes ``vectors.safetensors`` (plus ``vectors.json``) for the model spec
suffix ``SPEC+steer:vectors.safetensors@ALPHA``; ``cai steer auc`` reports, per direction and
layer, the AUC on held-out demonstrations. ``bench/steering.py`` measures generation as ALPHA
varies.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cai.cli._common import CONSTITUTION, console
from cai.constitution import resolve_constitution


def _layers(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated layer numbers") from None


@click.group("steer")
def steer() -> None:
    """Constitutional steering vectors: principles as directions in the residual stream."""


@steer.command("fit")
@click.option("--model", "model", default="embedded", show_default=True, help="Model spec.")
@CONSTITUTION
@click.option(
    "--principle",
    "principles",
    multiple=True,
    help="Principle id or tier name (repeatable; default: every tier and every principle "
    "with enough pairs).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("vectors.safetensors"),
    show_default=True,
    help="Vector file to write (a vectors.json sidecar goes beside it).",
)
@click.option("--layers", default=None, help="Layers to read, e.g. 9,15,21 (default: 30/50/70%).")
@click.option(
    "--method",
    type=click.Choice(["mean_difference", "probe"]),
    default="mean_difference",
    show_default=True,
    help="Mean difference of the paired states, or a logistic probe on their differences.",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also use this run's SL-CAI traces (draft vs final) and preferences.",
)
def fit(
    model: str,
    constitution_path: Path | None,
    principles: tuple[str, ...],
    out: Path,
    layers: str | None,
    method: str,
    run_dir: Path | None,
) -> None:
    """Fit one direction per principle from satisfying vs violating replies (train data only)."""
    from cai.train.steer import SteerConfig, fit_steering

    constitution = resolve_constitution(constitution_path)
    cfg = SteerConfig(layers=_layers(layers), method=method)  # type: ignore[arg-type]
    where = str(constitution_path or "the default constitution")
    with console.status("reading activations"):
        meta = fit_steering(
            model, constitution, out, ids=principles, config=cfg, run_dir=run_dir, where=where
        )
    table = Table(title=escape(f"{out}: {meta.method} at layers {meta.layers}"))
    for col in ("direction", "kind", "pairs", "train AUC per layer"):
        table.add_column(col)
    for d in meta.directions:
        aucs = " ".join(f"{a:.2f}" for a in d.train_auc)
        table.add_row(escape(d.id), d.kind, str(d.pairs), aucs)
    console.print(table)
    console.print(f"use it as: {escape(model)}+steer:{escape(str(out))}@ALPHA")


@steer.command("auc")
@click.argument("vectors", type=click.Path(path_type=Path))
@CONSTITUTION
@click.option("--model", "model", default=None, help="Model to read (default: the file's).")
def auc(vectors: Path, constitution_path: Path | None, model: str | None) -> None:
    """AUC (bootstrap 95% interval) of each direction on held-out demonstrations, per layer."""
    from cai.train.steer import direction_auc

    rows = direction_auc(vectors, resolve_constitution(constitution_path), model=model)
    table = Table(title=escape(f"{vectors}: held-out AUC, 95% bootstrap intervals"))
    for col in ("direction", "layer", "AUC", "95% CI", "pairs"):
        table.add_column(col)
    for r in rows:
        lo, hi = r.ci95
        table.add_row(
            escape(r.direction), str(r.layer), f"{r.auc:.3f}", f"[{lo:.2f}, {hi:.2f}]", str(r.pairs)
        )
    console.print(table)


COMMANDS = [steer]
