"""A feedback model as a judge on three labelled sets, each pair asked in both presentation orders.

Sets (each asked with the feedback stage's constitutional comparison, ``compare``):
  demos        the held-out split of the bundled comparison demonstrations (the rows a trained
               feedback model never saw), each under the principle it was written for
               (``cai.evaluate.demonstration_pairs``);
  calibration  the bundled calibration pairs (``cai.evaluate.calibration_pairs``), as the
               calibrate stage asks them: each under its own principle;
  hh           hh-rlhf harmless-base dev pairs (``../shared/data``), the first N rows, one
               principle sampled per pair as the feedback stage does.
Prints one row per set: pairs, accuracy against the label (Wilson 95% interval), Cohen's kappa
(bootstrap interval), position bias (share of the 2n orderings won by slot A; 0.5 is unbiased),
the decided share (both orders prefer the same reply), seconds and model requests (one per
ordering), then accuracy per category. Figures come from ``cai.evaluate.calibrate_judge``.
Transformers models load in float32, as the stages load them; nothing is cached.

    .venv/bin/python bench/evaluators.py --feedback run:runs/default/models/feedback
    .venv/bin/python bench/evaluators.py --feedback embedded --sets demos --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cai.backends import Backend, load_backend, parse_spec
from cai.constitution import load_default
from cai.evaluate import (
    LabelSet,
    calibrate_judge,
    calibration_pairs,
    demonstration_pairs,
    judge_check,
    load_labels,
)
from cai.pipeline._models import BATCHED_PREFIXES
from cai.records import GenerationRequest, SamplingParams, ScoreRequest, digest

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-dev.jsonl.gz"
SETS = ("demos", "calibration", "hh")
DEFAULT_LIMITS: dict[str, int | None] = {"demos": None, "calibration": 64, "hh": 64}
"""Pairs per set by default: every held-out demonstration (91), 16 calibration pairs per
category, the first 64 hh-rlhf rows: 219 pairs, 438 orderings (~9 min at 1.2 s an ordering)."""


class Counting:
    """A backend that counts the requests and calls it passes on."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.requests = 0
        self.calls = 0

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> Any:
        self.calls += 1
        self.requests += len(requests)
        return self.inner.generate(requests, params)

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.calls += 1
        self.requests += len(requests)
        return self.inner.score(requests)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True, slots=True)
class Picked:
    labels: LabelSet
    subset: str


def pick_demos(limit: int | None, seed: int) -> Picked:
    full = demonstration_pairs(split="heldout", constitution=load_default())
    if limit is None or limit >= len(full):
        return Picked(full, "heldout split, all")
    kept = sorted(full.pairs, key=lambda p: digest([seed, p.id]))[:limit]
    return Picked(replace(full, pairs=tuple(kept)), f"heldout split, {limit} by seeded digest")


def pick_calibration(limit: int | None, seed: int) -> Picked:
    full = calibration_pairs(seed=seed)
    if limit is None or limit >= len(full):
        return Picked(full, "all")
    per = max(1, limit // len({p.category for p in full.pairs}))
    return Picked(calibration_pairs(per, seed=seed), f"{per} per category")


def pick_hh(limit: int | None, seed: int, path: Path) -> Picked:
    if not path.is_file():
        raise SystemExit(
            f"{path}: hh-rlhf file not found (give --hh PATH or leave hh out of --sets)"
        )
    labels = load_labels(path, seed=seed, limit=limit)
    return Picked(labels, "all" if limit is None else f"first {len(labels)}")


def open_feedback(spec: str, batch_size: int) -> Backend:
    """The model as the stages open it: transformers specs in float32."""
    if parse_spec(spec)[0] in BATCHED_PREFIXES:
        return load_backend(spec, batch_size=batch_size, dtype="float32")
    return load_backend(spec)


def _cell(rate: Any) -> str:
    return str(rate.fmt())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feedback", default="embedded", help="model spec of the feedback model")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ",".join(SETS))
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="pairs per set (calibration: LIMIT/4 per category; 0: every pair); "
        "default: all demos, 64 calibration, 64 hh",
    )
    ap.add_argument("--hh", type=Path, default=HH, help="hh-rlhf label file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown or not names:
        ap.error(f"--sets: unknown {unknown}, choose from {','.join(SETS)}")

    def limit(name: str) -> int | None:
        if args.limit is None:
            return DEFAULT_LIMITS[name]
        return args.limit or None

    picked: dict[str, Picked] = {}  # every set read before the model loads
    for name in names:
        if name == "demos":
            picked[name] = pick_demos(limit(name), args.seed)
        elif name == "calibration":
            picked[name] = pick_calibration(limit(name), args.seed)
        else:
            picked[name] = pick_hh(limit(name), args.seed, args.hh)

    constitution = load_default()
    t0 = time.perf_counter()
    backend = Counting(open_feedback(args.feedback, args.batch_size))
    load_s = time.perf_counter() - t0
    print(
        f"feedback {args.feedback} (loaded in {load_s:.1f} s); constitution {constitution.label()}"
    )
    out: dict[str, Any] = {"feedback": args.feedback, "seed": args.seed, "sets": {}}
    rows: list[tuple[str, ...]] = []
    per_category: dict[str, dict[str, str]] = {}
    for name, pick in picked.items():
        n = len(pick.labels)
        print(f"{name}: {n} pairs ({pick.subset}), {2 * n} orderings", flush=True)
        requests, calls = backend.requests, backend.calls
        t = time.perf_counter()
        res = calibrate_judge(
            backend,
            pick.labels,
            comparison="compare",
            constitution=constitution,
            probe=False,
            subset=pick.subset,
            seed=args.seed,
        )
        secs = time.perf_counter() - t
        f = res.file
        check = judge_check(res, "feedback", name)
        if set(check.per_category) != {"uncategorized"}:
            per_category[name] = {c: r.fmt() for c, r in check.per_category.items()}
        out["sets"][name] = {
            "labels": f.labels.path,
            "subset": f.labels.subset,
            "n": n,
            "accuracy": f.accuracy.model_dump(mode="json"),
            "kappa": f.kappa.model_dump(mode="json"),
            "position_bias": f.position_bias.model_dump(mode="json"),
            "decided": f.order_consistency.model_dump(mode="json"),
            "length_bias": f.length_bias.model_dump(mode="json") if f.length_bias else None,
            "per_category": {c: r.model_dump(mode="json") for c, r in check.per_category.items()},
            "unassessed": f.unassessed,
            "seconds": round(secs, 2),
            "requests": backend.requests - requests,
            "calls": backend.calls - calls,
        }
        rows.append(
            (
                name,
                str(n),
                _cell(f.accuracy),
                _cell(f.kappa),
                _cell(f.position_bias),
                _cell(f.order_consistency),
                str(f.unassessed),
                f"{secs:.1f}",
                str(backend.requests - requests),
            )
        )
    backend.close()
    out["load_seconds"] = round(load_s, 2)
    head: tuple[str, ...] = ("set", "pairs", "accuracy", "kappa", "slot A wins", "decided")
    head += ("unassessed", "seconds", "requests")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print()
    for r in [head, *rows]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))
    if per_category:
        print("\naccuracy per category:")
    for name, cats in per_category.items():
        for cat, cell in cats.items():
            print(f"  {name:12} {cat:18} {cell}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
