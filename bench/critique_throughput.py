"""Critique-revision throughput on the embedded model: one-at-a-time vs batched vs raw generate.

Runs the same prompts through
  (a) the SL-CAI loop with every request sent alone (batch of one),
  (b) the batched SL-CAI loop (``cai.critique.critique_revise``, as ``cai critique`` runs it),
  (c) raw batched ``model.generate`` on exactly the prompts (b) rendered, same token limits,
and prints samples/s (one sample = draft + critique + revision per round), tokens/s and the
ratios. No response cache is used, and the backend's key/value store (reuse across calls) is
emptied before (b), so (b) recomputes everything (a) did. The last line is
``batched/sequential=R1 batched/raw=R2``.

    .venv/bin/python bench/critique_throughput.py --n 32 --n-sequential 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence

from cai.backends._hf import HFBackend
from cai.constitution import load_default
from cai.critique import CritiqueConfig, critique_revise
from cai.records import Generation, GenerationRequest, SamplingParams, ScoreRequest
from cai.store import load_prompts


class Recorder:
    """Passes calls through and keeps every (requests, params) batch and its tokens."""

    def __init__(self, inner: HFBackend, one_at_a_time: bool = False) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.one_at_a_time = one_at_a_time
        self.calls: list[tuple[list[GenerationRequest], SamplingParams]] = []
        self.tokens = 0

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        self.calls.append((list(requests), params))
        if self.one_at_a_time:
            outs = [g for r in requests for g in self.inner.generate([r], params)]
        else:
            outs = self.inner.generate(requests, params)
        self.tokens += sum(g.completion_tokens for g in outs)
        return outs

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return self.inner.score(requests)

    def close(self) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="prompts for the batched runs")
    ap.add_argument("--n-sequential", type=int, default=8, help="prompts for the one-at-a-time run")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--few-shot", type=int, default=2)
    args = ap.parse_args()

    prompts = load_prompts("builtin:harmful")[: args.n]
    constitution = load_default()
    cfg = CritiqueConfig.from_budget(
        args.max_new_tokens, rounds=args.rounds, few_shot=args.few_shot
    )
    cfg = dataclasses.replace(cfg, chunk_size=len(prompts))
    t = time.perf_counter()
    backend = HFBackend("embedded", batch_size=args.batch_size)
    print(f"model: embedded ({backend.dtype}), loaded in {time.perf_counter() - t:.1f} s")
    backend.generate([GenerationRequest.user("warm up")], SamplingParams(max_new_tokens=4))

    def timed(label: str, n: int, rec: Recorder) -> tuple[float, float]:
        t0 = time.perf_counter()
        critique_revise(prompts[:n], constitution, rec, rec, cfg)
        secs = time.perf_counter() - t0
        sps, tps = n / secs, rec.tokens / secs
        print(f"{label:<34} n={n:<4} {secs:8.1f} s  {sps:7.3f} samples/s  {tps:8.1f} tok/s")
        return sps, tps

    seq_sps, _ = timed("(a) one request at a time", args.n_sequential, Recorder(backend, True))
    backend.forget()  # (b) must not reuse key/values (a) computed for the same prompts
    batched = Recorder(backend)
    bat_sps, _ = timed(f"(b) batched stage (batch {args.batch_size})", len(prompts), batched)

    t0 = time.perf_counter()
    raw_tokens = 0
    for requests, params in batched.calls:
        texts = [backend.render(r.messages, r.prefill) for r in requests]
        raw_tokens += backend.raw_generate(texts, params.max_new_tokens, args.batch_size)
    secs = time.perf_counter() - t0
    raw_sps, raw_tps = len(prompts) / secs, raw_tokens / secs
    print(
        f"{'(c) raw batched generate':<34} n={len(prompts):<4} {secs:8.1f} s  "
        f"{raw_sps:7.3f} samples/s  {raw_tps:8.1f} tok/s"
    )
    print(f"tokens: batched stage {batched.tokens}, raw generate {raw_tokens}")
    print(f"batched/sequential={bat_sps / seq_sps:.2f} batched/raw={bat_sps / raw_sps:.2f}")


if __name__ == "__main__":
    main()
