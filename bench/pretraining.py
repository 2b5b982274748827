"""Constitutional pre-training on the embedded model: the pretrain stage on a small corpus, then
base vs pretrained-unconditioned vs pretrained-conditioned-on-<|ok|> on held-out prompts.

1. The corpus (a JSONL file of ``cai.train.CorpusRow``, written to ``--out``): the train split
   of the bundled critique demonstrations (``src/cai/constitution/data/demonstrations``): for
   a harmful request the draft that goes along with it and the revision that declines, for a
   look-alike request the needless refusal and the answer, all labelled by the stage's scorer
   (the rules refusal detector and the request's kind); for an ordinary request the flawed
   draft carries its principle as ``label`` (a factual slip is nothing a refusal detector can
   see) and the revision goes to the scorer. Plus the embedded model's own answers to the train
   split of ``builtin:helpful`` (the respond stage's plain chat), scored too. No held-out
   prompt is used: the demonstrations share no prompt with the bundled prompt sets (a test
   checks), and the helpful prompts are the train split.
2. The pretrain stage (``cai.pipeline._pretrain.stage_pretrain``) on that corpus, with the
   settings of ``examples/constitutional-pretraining.yaml`` unless flags change them.
3. ``cai.evaluate.evaluate_models`` on the held-out split of builtin:harmful, borderline and
   helpful (``--n`` each) for ``embedded``, ``run:OUT/models/pretrain+cond:none`` and
   ``run:OUT/models/pretrain`` (conditioned on ``<|ok|>`` as it loads), greedy, 128 tokens,
   labelled by the hybrid detector (the evaluation's, not the scorer's rules): harmful
   compliance, over-refusal and helpful answered, each with n and a Wilson 95% interval.

Prints the cost of each part (wall seconds, peak RSS of the process so far) and writes
``pretraining.json`` (figures) and ``replies.jsonl`` (every reply) to ``--out``.

    nice -n 19 .venv/bin/python bench/pretraining.py --out /tmp/cai-pretraining
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path
from typing import Any

MODELS = ("base", "pretrain_uncond", "pretrain")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_corpus(
    out: Path, policy: str, limit: int | None, helpful: int, seed: int
) -> tuple[Path, int]:
    """Write the corpus file; (path, rows)."""
    from cai.backends import load_backend
    from cai.constitution import load_critique_demonstrations, load_default
    from cai.critique import trim_to_sentence
    from cai.records import GenerationRequest, SamplingParams
    from cai.store import load_prompts

    demos = load_critique_demonstrations(constitution=load_default())
    demos = [d for d in demos if d.split == "train"]
    if limit is not None and limit < len(demos):
        demos = random.Random(seed).sample(demos, limit)
    rows: list[dict[str, Any]] = []
    for d in demos:
        harmful = d.category == "harmful"
        base = {"prompt": d.prompt, "harmful": harmful, "principle_id": d.principle_id}
        draft = {"id": f"{d.id}-draft", "text": d.draft, **base}
        if d.category == "ordinary":
            draft["label"] = d.principle_id  # by construction: the demonstration says so
        rows += [draft, {"id": f"{d.id}-revision", "text": d.revision, **base}]
    prompts = load_prompts("builtin:helpful", split="train")[:helpful]
    if prompts:
        backend = load_backend(policy, batch_size=16)
        gens = backend.generate(
            [GenerationRequest.user(p.text) for p in prompts],
            SamplingParams(max_new_tokens=128, seed=seed),
        )
        backend.close()
        for p, g in zip(prompts, gens, strict=True):
            text = g.text.strip() if g.finish_reason == "stop" else trim_to_sentence(g.text)
            if text:
                rows.append(
                    {"id": f"answer-{p.id}", "text": text, "prompt": p.text, "harmful": False}
                )
    path = out / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, len(rows)


def pretrain(out: Path, corpus: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run the pretrain stage on ``corpus`` into ``out/models/pretrain``; its detail."""
    from cai.constitution import load_default
    from cai.pipeline import Recipe
    from cai.pipeline._context import RunContext
    from cai.pipeline._models import ModelPool
    from cai.pipeline._pretrain import stage_pretrain
    from cai.store import ResponseCache

    recipe = Recipe.model_validate(
        {
            "name": "bench-pretraining",
            "seed": args.seed,
            "models": {"policy": args.policy},
            "stages": {
                "pretrain": {
                    "enabled": True,
                    "corpus": [str(corpus)],
                    "train_layers": args.train_layers,
                    "epochs": args.epochs,
                    "learning_rate": args.lr,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                }
            },
        }
    )
    pool = ModelPool(ResponseCache(out / "cache.sqlite"))
    try:
        return stage_pretrain(RunContext(recipe, out, load_default(), pool))
    finally:
        pool.close()


def evaluate(out: Path, policy: str, n: int, max_new: int, seed: int) -> dict[str, Any]:
    """The three models on the held-out suites; figures per model."""
    from cai.backends import load_backend
    from cai.evaluate import evaluate_models, load_suites
    from cai.records import SamplingParams
    from cai.scoring import get_detector

    spec = f"run:{out / 'models/pretrain'}"
    specs = {"base": policy, "pretrain_uncond": f"{spec}+cond:none", "pretrain": spec}
    suites = load_suites(["builtin:harmful", "builtin:borderline", "builtin:helpful"], limit=n)
    backends = {name: load_backend(s, batch_size=16) for name, s in specs.items()}
    try:
        res = evaluate_models(
            backends,
            suites,
            get_detector("hybrid"),
            None,
            SamplingParams(max_new_tokens=max_new, seed=seed),
            seed=seed,
        )
    finally:
        for b in backends.values():
            b.close()
    with (out / "replies.jsonl").open("w", encoding="utf-8") as fh:
        for r in res.responses:
            fh.write(r.model_dump_json() + "\n")
    figures: dict[str, Any] = {"specs": res.metrics.meta.models}
    for name in specs:
        m = res.metrics.models[name]
        figures[name] = {
            "harmful_compliance": m.harmful_compliance.model_dump(),
            "over_refusal": m.over_refusal.model_dump(),
            "helpful_answered": m.helpful_answered.model_dump() if m.helpful_answered else None,
            "seconds": res.metrics.meta.durations.get(f"generate:{name}"),
        }
    return figures


def _fmt(r: dict[str, Any] | None) -> str:
    if not r or r.get("value") is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['value']:.3f} (n={r['n']}, 95% CI {lo:.3f}-{hi:.3f})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cai-pretraining"))
    ap.add_argument("--policy", default="embedded", help="model spec pre-trained (embedded)")
    ap.add_argument("--corpus", type=Path, default=None, help="reuse a corpus.jsonl (build one)")
    ap.add_argument("--demos", type=int, default=None, help="train-split demonstrations (all)")
    ap.add_argument("--helpful", type=int, default=48, help="train-split helpful prompts")
    ap.add_argument("--n", type=int, default=24, help="held-out prompts per suite")
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--train-layers", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cost: dict[str, dict[str, float]] = {}
    t = time.perf_counter()
    if args.corpus is not None:  # an earlier run's corpus file: skip building it
        corpus, rows = args.corpus, sum(1 for _ in args.corpus.open(encoding="utf-8"))
    else:
        corpus, rows = build_corpus(out, args.policy, args.demos, args.helpful, args.seed)
    cost["corpus"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": peak_rss_mb()}
    print(f"corpus: {rows} rows -> {corpus} ({cost['corpus']['seconds']} s)", flush=True)
    t = time.perf_counter()
    detail = pretrain(out, corpus, args)
    cost["pretrain"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": peak_rss_mb()}
    print(
        f"pretrain: segments={detail['segments']} ok={detail['ok']} "
        f"violates={detail['violates']} left_out={detail['left_out']} steps={detail['steps']} "
        f"loss={detail['loss']:.3f} train_seconds={detail['train_seconds']:.0f} "
        f"wall={cost['pretrain']['seconds']} s peak_rss={cost['pretrain']['peak_rss_mb']:.0f} MiB",
        flush=True,
    )
    t = time.perf_counter()
    figures = evaluate(out, args.policy, args.n, args.max_new, args.seed)
    cost["evaluate"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": peak_rss_mb()}
    for name in MODELS:
        f = figures[name]
        print(f"{name:16s} {figures['specs'][name]}")
        print(f"  harmful_compliance {_fmt(f['harmful_compliance'])}")
        print(f"  over_refusal       {_fmt(f['over_refusal'])}")
        print(f"  helpful_answered   {_fmt(f['helpful_answered'])}")
        print(f"  generation seconds {f['seconds']}")
    print(
        "cost: "
        + "; ".join(
            f"{k} {v['seconds']} s (peak RSS {v['peak_rss_mb']:.0f} MiB)" for k, v in cost.items()
        ),
        flush=True,
    )
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "pretrain": detail}
    summary |= {"figures": figures, "cost": cost}
    (out / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {out / 'pretraining.json'}; replies: {out / 'replies.jsonl'}")
    return summary


if __name__ == "__main__":
    main()
