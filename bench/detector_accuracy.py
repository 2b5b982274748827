"""Refusal-detector accuracy on held-out labelled replies, per label scheme, with Wilson 95% CIs.

Detectors: rules, embedding (MiniLM + logistic regression, fitted on dev), hybrid (rules and
MiniLM weighed by a classifier fitted on dev; the default) and, with --llm-n, the llm rubric.
Sets: the bundled set's dev split (where the rules were tuned and the classifiers fitted: not an
honest figure), its test split (never tuned on) and the blind set (written by a separate author,
never read while tuning). Schemes: xstest, cai and binary (see cai.scoring._labels). Prints one
table, then the confusion matrices of the default detector.

    .venv/bin/python bench/detector_accuracy.py                 # rules, embedding, hybrid
    .venv/bin/python bench/detector_accuracy.py --refit-hybrid  # refit the shipped weights
    .venv/bin/python bench/detector_accuracy.py --llm-n 40      # add the llm rubric
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cai.scoring import (
    DEFAULT_DETECTOR,
    LABEL_SCHEMES,
    REFUSAL_LABELS,
    Detection,
    LabelledReply,
    Rate,
    get_detector,
    load_labels,
    score_predictions,
)

_SHORT = {
    "full_compliance": "comply",
    "full_refusal": "refuse",
    "partial_refusal": "partial",
    "undetermined": "undet.",
}


def scores(rows: list[LabelledReply], found: list[Detection], scheme: str) -> Rate:
    gold = [r.gold(scheme) for r in rows]
    return score_predictions(gold, [d.as_scheme(scheme) for d in found]).accuracy


def confusion(rows: list[LabelledReply], found: list[Detection], scheme: str) -> None:
    s = score_predictions([r.gold(scheme) for r in rows], [d.as_scheme(scheme) for d in found])
    print("  gold \\ pred    " + "".join(f"{_SHORT[c]:>9}" for c in REFUSAL_LABELS))
    for g in REFUSAL_LABELS:
        if g != "undetermined" and any(s.confusion[g].values()):
            print(f"  {_SHORT[g]:15}" + "".join(f"{s.confusion[g][c]:>9}" for c in REFUSAL_LABELS))


def refit() -> None:
    """Refit the shipped hybrid weights, then the shipped checks of rules and hybrid."""
    from cai.scoring._hybrid import HybridDetector, bundled_weights_path, write_weights

    det = HybridDetector(use_cache=False)
    t0 = time.perf_counter()
    weights = det.fit()
    write_weights(bundled_weights_path(), weights, det.digest)
    print(f"fitted on {len(det.train_rows)} dev rows in {time.perf_counter() - t0:.0f} s; "
          f"wrote {bundled_weights_path()} (digest {det.digest[:12]})")  # fmt: skip
    write_checks()


def write_checks() -> None:
    """Measure rules and hybrid on the test split and ship the figures (cai run reads them)."""
    import json
    from importlib import resources

    from cai.scoring._validation import BUNDLED_CHECKS, measure_detector

    checks = {}
    for name in ("rules", "hybrid"):
        c = measure_detector(get_detector(name))
        checks[c.detector] = c.model_dump(mode="json")
    path = resources.files("cai.scoring") / "data" / BUNDLED_CHECKS
    path = Path(str(path))
    path.write_text(json.dumps(checks, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}: {', '.join(checks)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="rules,embedding,hybrid", help="Comma-separated.")
    ap.add_argument("--refit-hybrid", action="store_true", help="Refit the shipped weights first.")
    ap.add_argument("--checks-only", action="store_true", help="Only rewrite the shipped checks.")
    ap.add_argument("--llm-n", type=int, default=0, help="Also the llm rubric on N test rows.")
    ap.add_argument("--judge", default="embedded", help="Model spec of the llm detector.")
    args = ap.parse_args()
    if args.checks_only:
        write_checks()
        return
    if args.refit_hybrid:
        refit()
    sets = {
        "dev (tuned)": load_labels(split="dev"),
        "test": load_labels(split="test"),
        "blind": load_labels("builtin:blind"),
    }
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    if args.llm_n:
        names.append("llm")
    print("sets: " + ", ".join(f"{k} n={len(v)}" for k, v in sets.items()))
    print(
        f"{'detector':10} {'set':12} {'seconds':>8}  " + "  ".join(f"{s:34}" for s in LABEL_SCHEMES)
    )
    kept: dict[str, tuple[list[LabelledReply], list[Detection]]] = {}
    for name in names:
        det = get_detector(name, **({"judge": args.judge} if name == "llm" else {}))
        for set_name, rows in sets.items():
            if name == "llm":
                if set_name != "test":
                    continue
                rows = rows[:: max(1, len(rows) // args.llm_n)][: args.llm_n]
            elif name != "rules" and set_name.startswith("dev"):
                continue  # fitted on dev: no figure there
            t0 = time.perf_counter()
            found = det.detect([r.prompt for r in rows], [r.response for r in rows])
            secs = time.perf_counter() - t0
            cells = [scores(rows, found, s).fmt() for s in LABEL_SCHEMES]
            print(f"{name:10} {set_name:12} {secs:8.1f}  " + "  ".join(f"{c:34}" for c in cells))
            if name == DEFAULT_DETECTOR:
                kept[set_name] = (rows, found)
        close = getattr(det, "close", None)
        if callable(close):
            close()
    for set_name, (rows, found) in kept.items():
        print(f"\n{DEFAULT_DETECTOR} on {set_name}, xstest scheme (rows gold, columns predicted):")
        confusion(rows, found, "xstest")


if __name__ == "__main__":
    main()
