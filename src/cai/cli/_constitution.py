"""``cai constitution``: inspect, lint, merge, vote in, import and export constitutions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cai.backends import get_embedder, load_backend
from cai.constitution import Constitution, Layer, resolve_constitution
from cai.constitution._consensus import (
    add_consensus_principles,
    cluster_groups,
    consensus,
    read_votes,
)
from cai.constitution._interop import FORMATS, export_constitution, import_constitution
from cai.constitution._io import write_constitution
from cai.constitution._lint import lint, red_team_taxonomy
from cai.constitution._merge import merge
from cai.critique._llm_checks import llm_conflict_check
from cai.errors import InputError

_SHORT = 72


def _out() -> Console:
    """Standard output, made per call so the terminal's width is read then; prose lines are
    never wrapped whatever the width (scripts read them), tables still fit."""
    return Console(highlight=False, soft_wrap=True)


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


_FIXED = ("id", "tier", "layer", "stakeholder")


def _fixed_widths(c: Constitution) -> list[int]:
    return [max(len(name), *(len(getattr(p, name)) for p in c.principles)) for name in _FIXED]


def _table_width(c: Constitution, width: int) -> int:
    """The terminal's width, or wider when ids, tiers, layers and stakeholders would not fit
    whole: they are never cut (a narrow terminal wraps the line, a script reads it whole)."""
    # Without edges, each of the 4 gaps between columns takes 3 cells (padding, rule, padding).
    return max(width, sum(_fixed_widths(c)) + 4 * 3 + 12)


def _table(c: Constitution, width: int) -> Table:
    """Principles as rows; the critique column gets what is left of ``width`` after the others."""
    fixed = _FIXED
    widths = _fixed_widths(c)
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
    console = _out()
    for line in _header(c):
        console.print(line)
    width = _table_width(c, console.width)
    Console(highlight=False, soft_wrap=True, width=width).print(_table(c, width))


_LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@constitution.command("lint")
@click.argument("file")
@click.option(
    "--embedder",
    default="minilm",
    show_default=True,
    help="Embedder for near-duplicates, conflicts and coverage (minilm, hash, or none).",
)
@click.option("--llm", default=None, help="Model spec that confirms each embedding-found conflict.")
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Also write findings here."
)
def lint_cmd(file: str, embedder: str, llm: str | None, json_out: Path | None) -> None:
    """Check a constitution: wording, duplicates, overbroad principles, uncovered harm
    categories of the red-team taxonomy, conflicts. Exits 1 when there is an error.

    FILE is a constitution YAML file or a bundled pack name.
    """
    console = _out()
    try:
        c = resolve_constitution(file)
    except InputError as exc:  # a file that does not load is the first lint error
        console.print(f"[bold red]error[/] load: {escape(str(exc))}")
        sys.exit(1)
    embed = None if embedder == "none" else get_embedder(embedder).embed
    confirm = llm_conflict_check(load_backend(llm)) if llm else None
    findings = lint(c, embed=embed, taxonomy=red_team_taxonomy(), confirm=confirm)
    # Each finding names the file first, as compilers do, so a log of many lints stays readable.
    where = escape(file)
    for f in findings:
        level = f"[{_LEVEL_STYLE[f.level]}]{f.level}[/]"
        console.print(f"{where}: {level} {f.code}: {escape(f.message)}")
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    console.print(
        f"{where} ({escape(c.name)}): {errors} error(s), {warnings} warning(s), "
        f"{len(findings)} finding(s)"
    )
    if json_out:
        json_out.write_text(json.dumps([f.model_dump() for f in findings], indent=2) + "\n")
    if errors:
        sys.exit(1)


@constitution.command("merge")
@click.argument("files", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Merged YAML.")
@click.option(
    "--name", default="merged", show_default=True, help="Name of the merged constitution."
)
def merge_cmd(files: tuple[str, ...], out: Path, name: str) -> None:
    """Merge stakeholder groups' constitutions into one, keeping provenance per principle.

    FILES are constitution YAML files or bundled pack names, highest precedence first.
    """
    merged = merge([(resolve_constitution(f), f) for f in files], name=name)
    write_constitution(merged, out)
    _out().print(
        f"wrote {escape(str(out))}: {len(merged.principles)} principles, "
        f"{len(merged.stakeholders)} stakeholders, digest {merged.digest()}"
    )


@constitution.command("consensus")
@click.argument("votes", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Constitution YAML to write."
)
@click.option(
    "--base", default="default", show_default=True, help="Constitution the principles join."
)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--cluster", is_flag=True, help="Find opinion groups by clustering the votes.")
@click.option("--groups", "k", type=click.IntRange(min=2), default=None, help="Number of clusters.")
@click.option("--tier", default="ethics", show_default=True, help="Tier of the new principles.")
@click.option("--stakeholder", default="public", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def consensus_cmd(
    votes: Path,
    out: Path,
    base: str,
    threshold: float,
    cluster: bool,
    k: int | None,
    tier: str,
    stakeholder: str,
    seed: int,
) -> None:
    """Turn a vote file (participant, group, statement, vote, text) into principles.

    Each statement's group-aware consensus is the product over opinion groups of
    (1 + agrees) / (2 + votes); statements at or above --threshold become principles. Scores are
    written next to --out as CONSENSUS.json.
    """
    rows = read_votes(votes)
    groups = cluster_groups(rows, k, seed) if cluster or k else None
    scores = consensus(rows, groups, threshold)
    c = add_consensus_principles(
        resolve_constitution(base), scores, source=str(votes), tier=tier, stakeholder=stakeholder
    )
    write_constitution(c, out)
    side = out.with_suffix(".consensus.json")
    side.write_text(json.dumps([s.model_dump() for s in scores], indent=2) + "\n")
    table = Table(title=f"consensus (threshold {threshold})", box=box.SIMPLE_HEAD)
    for col in ("statement", "score", "groups (agree/votes)", "principle"):
        table.add_column(col)
    for s in scores:
        per = ", ".join(f"{g}: {a}/{n}" for g, (a, n) in s.per_group.items())
        table.add_row(
            escape(s.statement), f"{s.score:.3f}", escape(per), "yes" if s.selected else ""
        )
    console = _out()
    console.print(table)
    console.print(f"wrote {escape(str(out))} and {escape(str(side))}")


@constitution.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Constitution YAML.")
@click.option("--tier", default="imported", show_default=True, help="Tier of every principle.")
@click.option("--name", default=None, help="Constitution name (default: from the file name).")
def import_cmd(file: Path, fmt: str, out: Path, tier: str, name: str | None) -> None:
    """Import llm-swarm (swarm), LangChain principle lists or ICAI principles as YAML."""
    c = import_constitution(file, fmt, name=name, tier=tier)
    write_constitution(c, out)
    _out().print(f"wrote {escape(str(out))}: {len(c.principles)} principles")


@constitution.command("export")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["swarm", "langchain"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON file.")
def export_cmd(file: str, fmt: str, out: Path) -> None:
    """Export a constitution as llm-swarm JSON (swarm) or a LangChain principle list."""
    data = export_constitution(resolve_constitution(file), fmt)
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _out().print(f"wrote {escape(str(out))}")


COMMANDS: list[click.Command] = [constitution]
