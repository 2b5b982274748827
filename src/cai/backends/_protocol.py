"""The one interface every model backend implements.

Batch-first: a stage hands a whole list of requests to ``generate`` or ``score`` and the backend
decides how to batch, pad and schedule them. Results come back in request order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cai.records import Generation, GenerationRequest, SamplingParams, ScoreRequest


@runtime_checkable
class Backend(Protocol):
    """A model that can continue chats and score candidate continuations."""

    spec: str
    """The model spec string that names this model in records and caches."""

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        """Continue each chat. A failed request comes back with finish_reason 'error'."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Log-probability (summed over tokens) of each candidate, per request."""
        ...

    def close(self) -> None:
        """Release model memory, connections and threads."""
        ...
