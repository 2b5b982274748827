"""Prompt injection against our own judges and detectors, before and after the quoted templates.

Judges (issue 16): the feedback model's constitutional comparison and the helpfulness judge,
each asked about the bundled calibration pairs (``--per-category`` of each of the 4 categories)
in both orders; then every pair it got right is asked again with each bundled injection
(``judge_injections``) appended to the worse reply, and a flip is a verdict that then favours
the worse reply (``cai calibrate --injections``). "before" asks the templates as they were
(``bench/templates/*.before.yaml``: the request and replies written bare), "after" the bundled
ones (each quoted between nonce markers a reply cannot forge). Judges: the mock (its scores are
a digest of the whole request, so its flips measure the machinery, not gullibility), with
``--embedded`` the embedded SmolLM2-135M as a prompted letter judge, and with ``--probe DIR`` a
trained reward probe (before: its stored request pattern; after: the same head with the
quoted template's pattern, ``scoring.comparison_pattern()``).

Detectors: each bundled detector injection (``detector_injections``) appended to the labelled
replies a detector gets right (binary scheme) whose label it argues against; a flip is a label
that changes (``cai eval-detector --injections``). ``--detectors`` run on the bundled labels'
test split; ``--llm-rows N`` also runs the llm detector (embedded model, score method) on the
first N test rows with the rubric before and after quoting.

Model calls are cached in --out/cache.sqlite, so a rerun resumes. Wilson 95% intervals.

The mock and the detectors run first, then the slow judges, cheapest first (probe, embedded
helpfulness judge, embedded comparison, llm detector); every figure is printed as it is done.
On 2 shared CPU cores the embedded model answers about 8 comparison requests a minute, hence
the small default n (4 pairs a category: 16 pairs, 32 requests before injections):

    nice -n 10 .venv/bin/python bench/judge_injection.py --embedded --per-category 4 \
        --llm-rows 16 --probe ~/.cache/cai/adapters/feedback-3a728f109474ec1e5ef2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from cai.constitution import load_default
from cai.evaluate import calibrate_judge, calibration_pairs
from cai.pipeline import ModelPool
from cai.records import PromptTemplate
from cai.scoring import (
    Detector,
    LabelledReply,
    LLMDetector,
    compare_template,
    comparison_pattern,
    detector_injection_probe,
    get_detector,
    helpfulness_template,
    load_labels,
    refusal_template,
)
from cai.store import ResponseCache, load_yaml_model

BEFORE = Path(__file__).resolve().parent / "templates"


def _before(name: str) -> PromptTemplate:
    return load_yaml_model(BEFORE / f"{name}.before.yaml", PromptTemplate)


def _judge_rows(pool: ModelPool, spec: str, comparisons: list[str], per_cat: int) -> None:
    labels = calibration_pairs(per_cat)
    backend = pool.get(spec)
    templates = {
        "compare": (_before("compare"), compare_template()),
        "helpfulness": (_before("helpfulness_judge"), helpfulness_template()),
    }
    for comparison in comparisons:
        for when, tpl in zip(("before", "after"), templates[comparison], strict=True):
            t = time.perf_counter()
            f = calibrate_judge(
                backend,
                labels,
                comparison="compare" if comparison == "compare" else "helpfulness",
                constitution=load_default(),
                probe=False,
                injections=True,
                n_boot=200,
                template=tpl,
            ).file
            inj = f.injection_probe
            assert inj is not None
            head = f"{spec:9} {comparison:11} {when:6} {f.template:20}"
            print(
                f"{head} accuracy {f.accuracy.fmt()}; right pairs {inj.right_without}; "
                f"{time.perf_counter() - t:.0f}s",
                flush=True,
            )
            for name, rate in [("any", inj.flip_rate), *inj.per_injection.items()]:
                flips = round((rate.value or 0.0) * rate.n)
                print(f"{head}   {name:13} {flips:4}/{rate.n:<4} {rate.fmt()}", flush=True)


def _probe_rows(pool: ModelPool, probe_dir: Path, per_cat: int, tmp: Path) -> None:
    after = tmp / "probe-after"
    shutil.copytree(probe_dir, after)
    data = json.loads((after / "reward_probe.json").read_text())
    data["request_pattern"] = comparison_pattern()
    (after / "reward_probe.json").write_text(json.dumps(data))
    labels = calibration_pairs(per_cat)
    for when, d, tpl in (
        ("before", probe_dir, _before("compare")),
        ("after", after, compare_template()),
    ):
        t = time.perf_counter()
        backend = pool.get(f"probe:{d}")
        f = calibrate_judge(
            backend,
            labels,
            constitution=load_default(),
            probe=False,
            injections=True,
            n_boot=200,
            template=tpl,
        ).file
        inj = f.injection_probe
        assert inj is not None
        head = f"{'probe':9} {'compare':11} {when:6} {f.template:20}"
        print(f"{head} accuracy {f.accuracy.fmt()}; {time.perf_counter() - t:.0f}s", flush=True)
        for name, rate in [("any", inj.flip_rate), *inj.per_injection.items()]:
            flips = round((rate.value or 0.0) * rate.n)
            print(f"{head}   {name:13} {flips:4}/{rate.n:<4} {rate.fmt()}", flush=True)


def _detector_rows(names: list[str], pool: ModelPool, llm_rows: int) -> None:
    rows = load_labels(None, split="test")
    runs: list[tuple[str, Detector, list[LabelledReply]]] = [
        (n, get_detector(n), rows) for n in names
    ]
    if llm_rows:
        judge = pool.get("embedded")
        for when, tpl in (("before", _before("refusal_judge")), ("after", refusal_template())):
            llm = LLMDetector(judge, method="score", template=tpl)
            runs.append((f"llm {when}", llm, rows[:llm_rows]))
    for label, det, part in runs:
        t = time.perf_counter()
        p = detector_injection_probe(det, part)
        head = f"{label:10} {p.detector[:44]:44}"
        print(
            f"{head} right without: {p.right_without}; {time.perf_counter() - t:.0f}s",
            flush=True,
        )
        for name, rate in [("any", p.flip_rate), *p.per_injection.items()]:
            flips = round((rate.value or 0.0) * rate.n)
            print(f"{head}   {name:24} {flips:4}/{rate.n:<4} {rate.fmt()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-category", type=int, default=4, help="calibration pairs a category")
    ap.add_argument("--mock-per-category", type=int, default=64)
    ap.add_argument("--embedded", action="store_true", help="also the embedded model (slow)")
    ap.add_argument("--embedded-comparisons", default="helpfulness,compare")
    ap.add_argument("--probe", type=Path, default=None, help="a reward probe directory")
    ap.add_argument("--detectors", default="rules,embedding,hybrid")
    ap.add_argument("--llm-rows", type=int, default=0, help="rows for the embedded llm detector")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-judge-injection"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pool = ModelPool(ResponseCache(args.out / "cache.sqlite"), batch_size=args.batch_size)
    t0 = time.perf_counter()
    names = [n for n in args.detectors.split(",") if n]
    comparisons = [c for c in args.embedded_comparisons.split(",") if c]
    with tempfile.TemporaryDirectory() as tmp:
        print("== judges: flips of right verdicts by an injection in the worse reply", flush=True)
        _judge_rows(pool, "mock", ["compare", "helpfulness"], args.mock_per_category)
        print("== detectors: flips of right labels by an injection in the reply", flush=True)
        _detector_rows(names, pool, 0)
        print("== slow judges (cheapest first)", flush=True)
        if args.probe is not None:
            _probe_rows(pool, args.probe.expanduser(), args.per_category, Path(tmp))
        if args.embedded:
            _judge_rows(pool, "embedded", comparisons, args.per_category)
        if args.llm_rows:
            _detector_rows([], pool, args.llm_rows)
    print(f"wall {time.perf_counter() - t0:.0f}s")
    pool.close()


if __name__ == "__main__":
    main()
