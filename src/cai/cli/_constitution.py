"""``cai constitution``: inspect constitution files and the bundled packs."""

from __future__ import annotations

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cai.constitution import Constitution, Layer, resolve_constitution

_SHORT = 72


def _short(text: str, limit: int = _SHORT) -> str:
    """The first ``limit`` characters of ``text`` on one line, cut at a word, with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if flat[limit - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def _layer_text(layer: Layer) -> str:
    if layer.when is None:
        return f"{layer.id} (always on)"
    topics = ", ".join(layer.when.topics)
    risk = f"; risk ≥ {layer.min_risk}" if layer.min_risk else ""
    return f"{layer.id} (topics: {topics}{risk})"


def _header(c: Constitution) -> list[str]:
    stakeholders = ", ".join(f"{s.id} ({s.weight})" for s in c.stakeholders)
    lines = [
        f"[bold]{escape(c.name)}[/bold]  format v{c.version}  digest {c.digest()}",
        f"priority: {escape(' > '.join(c.priority))}",
        f"stakeholders: {escape(stakeholders)}",
        f"layers: {escape('; '.join(_layer_text(ly) for ly in c.layers))}",
        f"few-shot examples: {len(c.few_shot)}",
    ]
    if c.description:
        lines.insert(1, escape(" ".join(c.description.split())))
    return lines


def _table(c: Constitution, width: int) -> Table:
    """Principles as rows; the critique column gets what is left of ``width`` after the others."""
    fixed = ("id", "tier", "layer", "stakeholder")
    widths = [max(len(name), *(len(getattr(p, name)) for p in c.principles)) for name in fixed]
    # Without edges, each of the 4 gaps between columns takes 3 cells (padding, rule, padding).
    room = max(width - sum(widths) - 4 * 3, 12)
    table = Table(
        title=f"{len(c.principles)} principles",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for name, w in zip(fixed, widths, strict=True):
        table.add_column(name, no_wrap=True, width=w, style="bold" if name == "id" else None)
    table.add_column("critique", no_wrap=True, overflow="ellipsis", max_width=room)
    for p in c.principles:
        cells = (p.id, p.tier, p.layer, p.stakeholder, _short(p.critique, min(room, _SHORT)))
        table.add_row(*(escape(cell) for cell in cells))
    return table


@click.group("constitution")
def constitution() -> None:
    """Inspect constitutions (YAML files or bundled packs)."""


@constitution.command("show")
@click.argument("file", required=False)
def show(file: str | None) -> None:
    """Print a constitution's header and its principles as a table.

    FILE is a constitution YAML file or the name of a bundled pack (default: the bundled
    default constitution).
    """
    c = resolve_constitution(file)
    console = Console(highlight=False)
    for line in _header(c):
        console.print(line)
    console.print(_table(c, console.width))


COMMANDS: list[click.Command] = [constitution]
