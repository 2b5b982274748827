"""A seeded slice of bench/fault_injection.py: through a real local server that answers 30% of
attempts with a fault (5xx, 429, timeout, a cut body, not JSON, no or two choices, no or NaN
logprobs), no request comes back wrong and none is lost."""

from __future__ import annotations

from types import ModuleType

from bench_module import load_bench


def _bench() -> ModuleType:
    return load_bench("fault_injection")


def test_faults_become_failures_never_labels() -> None:
    r = _bench().campaign(requests=150, rate=0.3, seed=1, retries=3, timeout=0.3)
    assert sum(r["faults"].values()) >= 30  # the server really misbehaved
    assert len(r["faults"]) >= 7  # most kinds of fault were sent
    assert r["wrong"] == 0 and r["lost"] == 0
    assert r["right"] + r["unassessed"] == 150 and r["right"] >= 140


def test_every_attempt_a_fault_is_unassessed_not_wrong() -> None:
    r = _bench().campaign(requests=20, rate=1.0, seed=2, retries=1, timeout=0.2)
    assert r["right"] == 0 and r["wrong"] == 0 and r["unassessed"] == 20 and r["lost"] == 0
