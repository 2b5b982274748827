"""Revision quality by round under escalating principles, on the bundled red-team prompts.

Runs the SL-CAI loop with ``escalation`` on (the default pack's three levels) and early stopping
off, so every prompt has every round, then prints per round k (0: the policy's draft):
- usable: share of round-k revisions that pass the critique stage's degeneracy checks
  (``cai.critique.degeneracy`` with the round-k revision as the final reply);
- refusal: share that the rules detector labels a full or partial refusal;
- no issue / unchanged: how often the early-stop signals fired in that round (they would have
  stopped the record there with ``stop_early`` on);
- pref k>k-1: share of prompts where the feedback model prefers round k's revision over round
  k-1's under round k's principle, both presentation orders averaged, a tie counted half.
Every share has n and a 95% Wilson interval. The feedback model is whatever ``--feedback`` names;
a reward probe (``probe:DIR``) has not been validated against people, so that column says what
an unvalidated judge thinks, not what people would.

    nice -n 10 .venv/bin/python bench/escalation.py --n 16 --rounds 3 --max-new-tokens 96 \
        --feedback probe:$HOME/.cache/cai/adapters/feedback-XXXX
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cai.backends import CachedBackend, load_backend
from cai.constitution import load_default
from cai.critique import CritiqueConfig, critique_revise, degeneracy
from cai.records import SLCAIRecord
from cai.scoring import answer_request, compare_messages, get_detector, p_slot_a, wilson_interval
from cai.store import ResponseCache, load_prompts


def _share(k: float, n: int) -> str:
    if n == 0:
        return "n=0"
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}] n={n}"


def _texts(rec: SLCAIRecord) -> list[str]:
    """Round 0 is the draft, round k the k-th revision."""
    return [rec.draft, *(x.revision for x in rec.rounds)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--policy", default="embedded")
    ap.add_argument("--critic", default="embedded")
    ap.add_argument("--feedback", default="embedded")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/cai-bench-escalation.sqlite")
    ap.add_argument("--samples", type=int, default=3, help="records to print in full")
    args = ap.parse_args()

    constitution = load_default()
    prompts = load_prompts("builtin:harmful", limit=args.n)
    cache = ResponseCache(Path(args.cache))
    policy = CachedBackend(load_backend(args.policy), cache)
    critic = (
        policy if args.critic == args.policy else CachedBackend(load_backend(args.critic), cache)
    )
    cfg = CritiqueConfig.from_budget(
        args.max_new_tokens, rounds=args.rounds, seed=args.seed, escalation=True
    )
    t0 = time.perf_counter()
    records, failures = critique_revise(prompts, constitution, policy, critic, cfg)
    loop_s = time.perf_counter() - t0
    if failures:
        print(f"{len(failures)} failures, first: {failures[0].line()}")

    examples = constitution.few_shot[: cfg.few_shot]
    few_shot_texts = [t for ex in examples for t in (ex.response, ex.critique, ex.revision)]
    detector = get_detector("rules")
    judge = load_backend(args.feedback)
    from cai.critique._stopping import finds_nothing, unchanged

    print(
        f"policy={args.policy} critic={args.critic} feedback={args.feedback} n={len(records)} "
        f"rounds={args.rounds} max_new_tokens={args.max_new_tokens} loop={loop_s:.0f}s "
        f"constitution={constitution.label()}"
    )
    print("round | usable | refusal (rules) | no-issue signal | unchanged | pref k>k-1 | mean P(k)")
    t1 = time.perf_counter()
    for k in range(args.rounds + 1):
        texts = [_texts(r)[k] for r in records]
        usable = 0
        if k > 0:
            for r, text in zip(records, texts, strict=True):
                x = r.rounds[k - 1]
                reason = degeneracy(
                    prompt=r.prompt.text,
                    draft=r.draft,
                    final=text,
                    final_finish=x.revision_finish,
                    critiques=[y.critique for y in r.rounds[:k]],
                    few_shot_texts=few_shot_texts,
                )
                usable += reason is None
        labels = detector.detect([r.prompt.text for r in records], texts)
        refusals = sum(d.label in ("full_refusal", "partial_refusal") for d in labels)
        n = len(records)
        if k == 0:
            print(f"0 (draft) | - | {_share(refusals, n)} | - | - | - | -")
            continue
        quiet = sum(finds_nothing(r.rounds[k - 1].critique) for r in records)
        same = sum(unchanged(_texts(r)[k - 1], _texts(r)[k]) for r in records)
        reqs = []
        for r in records:
            pr = constitution.principle(r.rounds[k - 1].principle_id)
            new, old = _texts(r)[k], _texts(r)[k - 1]
            reqs.append(answer_request(compare_messages(constitution, pr, r.prompt.text, new, old)))
            reqs.append(answer_request(compare_messages(constitution, pr, r.prompt.text, old, new)))
        scores = judge.score(reqs)
        wins, ps = 0.0, []
        for j in range(n):
            a, b = p_slot_a(scores[2 * j]), p_slot_a(scores[2 * j + 1])
            if a is None or b is None:
                continue
            p = (a + (1 - b)) / 2  # P(round k better), both orders
            ps.append(p)
            wins += 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0
        mean_p = f"{sum(ps) / len(ps):.3f}" if ps else "-"
        print(
            f"{k} | {_share(usable, n)} | {_share(refusals, n)} | {_share(quiet, n)} | "
            f"{_share(same, n)} | {_share(wins, len(ps))} | {mean_p}"
        )
    print(f"judging took {time.perf_counter() - t1:.0f}s")
    for r in records[: args.samples]:
        print(f"\n--- {r.id}: {r.prompt.text[:100]!r}")
        print(f"draft: {r.draft[:160]!r}")
        for k, x in enumerate(r.rounds, 1):
            print(f"round {k} [level {x.escalation_level}, {x.principle_id}]")
            print(f"  critique: {x.critique[:160]!r}")
            print(f"  revision: {x.revision[:160]!r}")


if __name__ == "__main__":
    main()
