"""Progress display for long stages: a rich bar over model requests with tokens per second."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, soft_wrap=True)
"""Prose lines are never wrapped (scripts read them; tables still fit the terminal)."""


@contextmanager
def request_progress(total: int, description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield ``advance(requests_done, tokens_generated)`` driving one progress bar."""
    start = time.perf_counter()
    tokens = 0
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(description, total=total, rate="")

    def advance(n: int, t: int) -> None:
        nonlocal tokens
        tokens += t
        rate = tokens / max(time.perf_counter() - start, 1e-9)
        progress.update(task, advance=n, rate=f"{rate:,.0f} tok/s")

    with progress:
        yield advance
