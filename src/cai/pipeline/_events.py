"""The run's append-only event log (``events.jsonl``) and what it says is finished.

Each event is flushed and fsynced; a line torn by a kill mid-append is cut off when the log is
next opened, so later events never land on the end of a broken line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cai.records import Strict
from cai.store import cut_torn_tail, read_jsonl

EventKind = Literal["start", "done", "skipped", "failed", "reset"]


class RunEvent(Strict):
    """One line of events.jsonl."""

    version: Literal[1] = 1
    """Schema version."""
    time: float
    """Unix time."""
    stage: str
    """Stage name."""
    event: EventKind
    """start, done, skipped (nothing to do, with the reason), failed, reset (--from)."""
    detail: dict[str, Any] = Field(default_factory=dict)
    """Counts, durations, reasons, output paths."""


class EventLog:
    """Append events and answer which stages are finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(path)

    def events(self) -> list[RunEvent]:
        if not self.path.exists():
            return []
        return list(read_jsonl(self.path, RunEvent, allow_torn_tail=True))

    def append(self, stage: str, event: EventKind, **detail: Any) -> RunEvent:
        ev = RunEvent(time=time.time(), stage=stage, event=event, detail=detail)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(ev.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return ev

    def finished(self) -> dict[str, RunEvent]:
        """Stages whose last event is done or skipped, with that event."""
        last: dict[str, RunEvent] = {}
        for ev in self.events():
            last[ev.stage] = ev
        return {s: e for s, e in last.items() if e.event in ("done", "skipped")}
