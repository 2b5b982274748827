"""Helpers shared by CLI commands: opening models by role, progress bars."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from cai.backends import Backend, parse_spec
from cai.pipeline import ModelPool, console, request_progress
from cai.store import ResponseCache

__all__ = ["console", "open_models", "request_progress"]


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
