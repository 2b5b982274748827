"""Progress display for long stages: a rich bar over model requests with tokens per second,
and keeping library output (warnings, loading bars, trainer logs) off the console.

Owns: the run's console, ``request_progress`` and ``library_output_to``.
Must not know: what the stages do.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def _real_fd(stream: object, fd: int) -> bool:
    try:
        return stream.fileno() == fd  # type: ignore[attr-defined, no-any-return]
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def library_output_to(log: Path) -> Iterator[bool]:
    """Send everything written to file descriptors 1 and 2 (Python warnings, transformers'
    loading bars, trainer logs, child processes, C libraries) to ``log``, appended, while the
    run's console keeps writing to the terminal. Yields whether it redirected: it does nothing
    when stdout or stderr is not a real file descriptor (a test runner capturing output)."""
    if not (_real_fd(sys.stdout, 1) and _real_fd(sys.stderr, 2)):
        yield False
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    before = console.file
    try:
        console.file = terminal
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield True
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)
        console.file = before
        terminal.close()
