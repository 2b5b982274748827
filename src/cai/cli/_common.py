"""Helpers shared by CLI commands: opening models by role, progress bars."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from cai.backends import Backend, parse_spec
from cai.errors import InputError
from cai.pipeline import ModelPool, console, request_progress
from cai.records import PromptRecord
from cai.store import ResponseCache, load_prompts

__all__ = [
    "BATCH_SIZE",
    "COLUMN",
    "CONSTITUTION",
    "OUT_DIR",
    "PROMPTS",
    "console",
    "load_prompt_set",
    "open_models",
    "request_progress",
]

# Options several commands share, defined once so their names, types and help agree.
PROMPTS = click.option(
    "--prompts",
    "prompts_src",
    required=True,
    help="builtin:harmful|helpful|borderline, a .jsonl/.csv file, or a HF dataset id.",
)
COLUMN = click.option("--column", default=None, help="Text column of a CSV/JSONL/dataset file.")
CONSTITUTION = click.option(
    "--constitution",
    "constitution_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Constitution YAML or bundled pack name (default: the bundled one).",
)
OUT_DIR = click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Output directory (model calls are cached there; rerun to resume and retry failures).",
)
BATCH_SIZE = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Requests per forward batch on transformers backends.",
)


def load_prompt_set(
    source: str,
    *,
    column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list[PromptRecord]:
    """``load_prompts`` for a command that needs at least one prompt: an empty file (or split)
    is an error naming it, not a run that silently does nothing."""
    prompts = load_prompts(source, column=column, split=split, limit=limit)
    if not prompts:
        why = f"none in split {split!r}" if split else "it is empty"
        raise InputError(f"{source}: no prompts ({why})")
    return prompts


def open_models(
    specs: dict[str, str], cache_path: Path, *, batch_size: int, stack: ExitStack
) -> dict[str, Backend]:
    """One backend per distinct spec (roles sharing a spec share the instance), cached."""
    for spec in specs.values():
        parse_spec(spec)  # fail fast on a bad spec before loading anything
    cache = ResponseCache(cache_path)
    stack.callback(cache.close)
    pool = ModelPool(cache, batch_size=batch_size)
    stack.callback(pool.close)
    out = {}
    for role, spec in specs.items():
        with console.status(f"loading {spec}"):
            out[role] = pool.get(spec)
    return out
