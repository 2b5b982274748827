"""Helpers shared by CLI commands: opening models by role, progress bars, printing summaries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cai.backends import Backend, CachedBackend, load_backend, parse_spec
from cai.store import ResponseCache

console = Console(stderr=True)

_BATCHED = {"embedded", "hf", "run"}


def open_models(
    specs: dict[str, str], cache_path: Path, *, batch_size: int, stack: ExitStack
) -> dict[str, Backend]:
    """One backend per distinct spec (roles sharing a spec share the instance), cached."""
    for spec in specs.values():
        parse_spec(spec)  # fail fast on a bad spec before loading anything
    cache = ResponseCache(cache_path)
    stack.callback(cache.close)
    loaded: dict[str, Backend] = {}
    for spec in dict.fromkeys(specs.values()):
        prefix, _ = parse_spec(spec)
        opts = {"batch_size": batch_size} if prefix in _BATCHED else {}
        with console.status(f"loading {spec}"):
            inner = load_backend(spec, **opts)
        stack.callback(inner.close)
        loaded[spec] = CachedBackend(inner, cache)
    return {role: loaded[spec] for role, spec in specs.items()}


@contextmanager
def request_progress(total: int, description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar over model requests that also shows generated tokens per second."""
    start = time.perf_counter()
    tokens = 0
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(description, total=total, rate="")

    def advance(n: int, t: int) -> None:
        nonlocal tokens
        tokens += t
        rate = tokens / max(time.perf_counter() - start, 1e-9)
        progress.update(task, advance=n, rate=f"{rate:,.0f} tok/s")

    with progress:
        yield advance
