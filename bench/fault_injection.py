"""Fault injection against the OpenAI-style backend: a real local HTTP server answers a share of
requests with a fault, and every request must come back right or marked failed, never wrong.

The server (``tests/openai_server.py``, real sockets) answers ``--rate`` of the attempts with one
of: HTTP 500, HTTP 429 with Retry-After, a reply slower than the client's timeout, a body cut off
mid-way, a body that is not JSON, an empty choice list, two choices, and for scoring requests
no logprobs or NaN logprobs. The rest it answers correctly: a generation is the echo of the
request, a comparison scores 'A' -0.25 and 'B' -1.75.

Seven in ten requests are generations (one batched ``generate`` call), three in ten comparisons
(one ``score`` call each: a score call fails as a whole). Each request is then
  right        the correct text or scores,
  wrong        a result that is not the correct one (a fault turned into a label),
  unassessed   returned as failed (``finish_reason='error'`` or ``BackendError``),
  lost         no outcome at all.
Prints the faults sent by kind, then ``requests=N wrong=W unassessed=U lost=L``. Targets: wrong=0
and lost=0; unassessed is the requests whose every attempt (1 + ``--retries``) met a fault.

    .venv/bin/python bench/fault_injection.py --requests 1000 --rate 0.3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cai.backends._openai import OpenAIBackend
from cai.errors import BackendError
from cai.records import GenerationRequest, SamplingParams, ScoreRequest
from openai_server import FakeOpenAIServer, logprobs_reply

TRUTH = {"A": -0.25, "B": -1.75}


def campaign(
    requests: int, rate: float, seed: int, retries: int, timeout: float = 0.5
) -> dict[str, Any]:
    """Run the campaign; the counts and the faults sent."""
    n_score = round(requests * 0.3)
    n_gen = requests - n_score
    counts = {"right": 0, "wrong": 0, "unassessed": 0}
    with FakeOpenAIServer() as server:
        server.script("compare", logprobs_reply(TRUTH))
        server.inject(rate, seed=seed, timeout_delay=timeout * 2)
        backend = OpenAIBackend(
            f"openai:fault-test@{server.base_url}",
            timeout=timeout,
            max_retries=retries,
            backoff=0.005,
            concurrency=8,
        )
        start = time.perf_counter()
        gens = [GenerationRequest.user(f"question {i}") for i in range(n_gen)]
        got = backend.generate(gens, SamplingParams(max_new_tokens=16))
        for i, g in enumerate(got):
            if g.finish_reason == "error":
                counts["unassessed"] += 1
            elif g.text == f"echo: question {i}":
                counts["right"] += 1
            else:
                counts["wrong"] += 1
        scored = 0
        for i in range(n_score):
            req = ScoreRequest(
                messages=GenerationRequest.user(f"compare {i}").messages, candidates=("A", "B")
            )
            try:
                s = backend.score([req])[0]
            except BackendError:
                counts["unassessed"] += 1
                continue
            scored += 1
            counts["right" if s == [TRUTH["A"], TRUTH["B"]] else "wrong"] += 1
        seconds = time.perf_counter() - start
        backend.close()
        faults = dict(sorted(server.faults.items()))
        attempts = len(server.received)
    outcomes = len(got) + n_score
    return {
        "requests": requests,
        **counts,
        "lost": requests - outcomes,
        "faults": faults,
        "attempts": attempts,
        "seconds": round(seconds, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0.3, help="share of attempts answered by a fault")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retries", type=int, default=4, help="retries per request (the budget)")
    args = ap.parse_args(argv)
    r = campaign(args.requests, args.rate, args.seed, args.retries)
    sent = sum(r["faults"].values())
    print(f"attempts {r['attempts']} ({sent} faults at rate {args.rate}), {r['seconds']} s")
    for kind, n in r["faults"].items():
        print(f"  {kind:13s} {n}")
    print(f"right {r['right']}")
    print(
        f"requests={r['requests']} wrong={r['wrong']} unassessed={r['unassessed']} lost={r['lost']}"
    )
    return r


if __name__ == "__main__":
    main()
