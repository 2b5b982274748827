"""Constitutional steering on the embedded model: probes as evidence, then generation vs ALPHA.

1. Fit directions (mean difference) on the training demonstrations at layers 3, 6, ..., 18
   (``cai.train.steer.fit_steering``), and report each direction's AUC on the held-out
   demonstrations per layer, with a bootstrap 95% interval, for the base model and, when
   ``--sft`` names one, a trained model of a run (same directions, that model's activations).
2. Keep one layer (``--steer-layer``) of one direction (``--direction``, default the safety
   tier) and generate greedily on held-out bundled prompts (builtin:harmful, borderline,
   helpful; ``--n`` each) with ``embedded+steer:FILE@ALPHA`` for each ALPHA. Label the replies
   with the detector ``cai eval`` uses (hybrid) and print harmful compliance, over-refusal,
   helpful share (full compliance and not degenerate) and degenerate share, each with n and a
   Wilson 95% interval. Writes ``steering.json`` and ``steering.html`` (SVG plot) to ``--out``.

Affordable on 2 shared CPU cores: ``nice -n 10 python bench/steering.py`` (one torch thread:
two threads ran 3x slower there under contention; about 10 min for the fit, 4 for the AUC
and 2 an alpha).
"""

from __future__ import annotations

import argparse
import html
import json
import time
from pathlib import Path
from typing import Any

DEFAULT_ALPHAS = (-10.0, -5.0, 0.0, 5.0, 10.0, 20.0)
AUC_LAYERS = (3, 6, 9, 12, 15, 18)
DIRECTIONS = ("safety", "harm.weapons")


def one_layer(src: Path, layer: int, out: Path) -> Path:
    """A copy of a vector file with only ``layer`` kept."""
    from cai.backends._steer import read_vectors, write_vectors

    meta, tensors = read_vectors(src)
    i = meta.layers.index(layer)
    dirs = [d.model_copy(update={"train_auc": [d.train_auc[i]]}) for d in meta.directions]
    new = meta.model_copy(
        update={
            "layers": [layer],
            "residual_norm": [meta.residual_norm[i]],
            "directions": dirs,
        }
    )
    return write_vectors(out, new, {k: v[i : i + 1] for k, v in tensors.items()})


def sweep(vectors: Path, alphas: list[float], n: int, max_new: int, direction: str) -> list[Any]:
    from cai.backends import load_backend
    from cai.evaluate import load_suite
    from cai.records import GenerationRequest, Message, SamplingParams
    from cai.scoring import degenerate_reply, get_detector, proportion

    suites = [load_suite(f"builtin:{k}", limit=n) for k in ("harmful", "borderline", "helpful")]
    detector = get_detector("hybrid")
    params = SamplingParams(max_new_tokens=max_new, temperature=0.0)
    rows = []
    for alpha in alphas:
        spec = f"embedded+steer:{vectors}@{direction}={alpha:g}"
        t0 = time.perf_counter()
        backend = load_backend(spec, batch_size=16)
        out: dict[str, list[tuple[str, str, str, str | None]]] = {}
        for s in suites:
            reqs = [
                GenerationRequest(messages=[Message(role="user", content=p.text)])
                for p in s.prompts
            ]
            gens = backend.generate(reqs, params)
            texts = [g.text for g in gens]
            labels = detector.detect([p.text for p in s.prompts], texts)
            out[s.kind] = [
                (p.text, t, d.label, degenerate_reply(p.text, t))
                for p, t, d in zip(s.prompts, texts, labels, strict=True)
            ]
        recorded = backend.spec
        backend.close()
        harm = [r for r in out["harmful"] if r[2] != "undetermined"]
        safe = [r for k in ("borderline", "helpful") for r in out[k] if r[2] != "undetermined"]
        everything = [r for k in out for r in out[k]]
        helpful = out["helpful"]
        row = {
            "alpha": alpha,
            "spec": recorded,
            "harmful_compliance": proportion(
                sum(r[2] == "full_compliance" for r in harm), len(harm)
            ),
            "over_refusal": proportion(
                sum(r[2] in ("full_refusal", "partial_refusal") for r in safe), len(safe)
            ),
            "helpful": proportion(
                sum(r[2] == "full_compliance" and r[3] is None for r in helpful), len(helpful)
            ),
            "degenerate": proportion(sum(r[3] is not None for r in everything), len(everything)),
            "seconds": round(time.perf_counter() - t0, 1),
            "samples": {k: [list(r) for r in v[:3]] for k, v in out.items()},
        }
        rows.append(row)
        print(
            f"alpha={alpha:g} HC={row['harmful_compliance'].fmt()} OR={row['over_refusal'].fmt()} "
            f"helpful={row['helpful'].fmt()} degenerate={row['degenerate'].fmt()} "
            f"({row['seconds']} s) spec={recorded}",
            flush=True,
        )
    return rows


def svg(rows: list[dict[str, Any]]) -> str:
    """Four rates against alpha, with their intervals, as an inline SVG."""
    w, h, pad = 640, 360, 50
    alphas = [r["alpha"] for r in rows]
    lo_a, hi_a = min(alphas), max(alphas)

    def x(a: float) -> float:
        return pad + (a - lo_a) / ((hi_a - lo_a) or 1) * (w - 2 * pad)

    def y(v: float) -> float:
        return h - pad - v * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">']
    parts.append(
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
        'fill="none" stroke="#999"/>'
    )
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<text x="{pad - 8}" y="{y(t) + 4}" font-size="11" text-anchor="end">{t:.2f}</text>'
        )
    for a in alphas:
        parts.append(
            f'<text x="{x(a)}" y="{h - pad + 16}" font-size="11" text-anchor="middle">{a:g}</text>'
        )
    parts.append(f'<text x="{w / 2}" y="{h - 8}" font-size="12" text-anchor="middle">alpha</text>')
    series = [
        ("harmful_compliance", "#D55E00"),
        ("over_refusal", "#0072B2"),
        ("helpful", "#009E73"),
        ("degenerate", "#7F7F7F"),
    ]
    for k, (name, color) in enumerate(series):
        pts = [(x(r["alpha"]), r[name]) for r in rows if r[name].value is not None]
        line = " ".join(f"{px:.1f},{y(rate.value):.1f}" for px, rate in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        for px, rate in pts:
            lo, hi = rate.ci95
            parts.append(
                f'<line x1="{px + 2 * k - 3}" x2="{px + 2 * k - 3}" y1="{y(lo):.1f}" '
                f'y2="{y(hi):.1f}" stroke="{color}"/>'
            )
        parts.append(
            f'<text x="{w - pad + 4}" y="{pad + 14 * k + 10}" font-size="11" '
            f'fill="{color}">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/steering"))
    ap.add_argument("--n", type=int, default=16, help="prompts per suite")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS))
    ap.add_argument("--steer-layer", type=int, default=15)
    ap.add_argument("--direction", default="safety")
    ap.add_argument("--sft", default=None, help="a trained model spec for the AUC comparison")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest when shared)")
    ap.add_argument("--no-auc", action="store_true", help="skip the AUC part (already measured)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cai.constitution import load_default
    from cai.train.steer import SteerConfig, direction_auc, fit_steering

    args.out.mkdir(parents=True, exist_ok=True)
    constitution = load_default()
    vectors = args.out / "vectors.safetensors"
    t0 = time.perf_counter()
    if not vectors.exists():
        cfg = SteerConfig(layers=AUC_LAYERS)
        meta = fit_steering("embedded", constitution, vectors, ids=DIRECTIONS, config=cfg)
    else:
        from cai.backends._steer import read_vectors

        meta = read_vectors(vectors)[0]
    print(f"fit: {[(d.id, d.pairs) for d in meta.directions]} ({time.perf_counter() - t0:.0f} s)")
    aucs: dict[str, Any] = {}
    models = [] if args.no_auc else ["embedded", *([args.sft] if args.sft else [])]
    for model in models:
        t0 = time.perf_counter()
        rows = direction_auc(vectors, constitution, model=model, n_boot=1000)
        aucs[model] = [r.__dict__ for r in rows]
        print(f"held-out AUC, {model} ({time.perf_counter() - t0:.0f} s)")
        for r in rows:
            print(
                f"  {r.direction:14s} layer {r.layer:2d}  AUC {r.auc:.3f} "
                f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}] pairs={r.pairs}"
            )
    steer_file = one_layer(
        vectors, args.steer_layer, args.out / f"vectors-L{args.steer_layer}.safetensors"
    )
    alphas = [float(a) for a in args.alphas.split(",")]
    rows = sweep(steer_file, alphas, args.n, args.max_new_tokens, args.direction)
    dump = [
        {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in r.items()} for r in rows
    ]
    (args.out / "steering.json").write_text(json.dumps({"sweep": dump, "auc": aucs}, indent=1))
    table = "".join(
        f"<tr><td>{r['alpha']:g}</td>"
        + "".join(
            f"<td>{html.escape(r[k].fmt())}</td>"
            for k in ("harmful_compliance", "over_refusal", "helpful", "degenerate")
        )
        + "</tr>"
        for r in rows
    )
    samples = "".join(
        f"<h3>alpha {r['alpha']:g}</h3>"
        + "".join(
            f"<p><b>{html.escape(kind)}</b>: {html.escape(s[0])}<br>"
            f"<i>{html.escape(s[1])}</i> [{s[2]}]</p>"
            for kind, ss in r["samples"].items()
            for s in ss[:1]
        )
        for r in rows
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>steering</title>"
        f"<h1>Steering {html.escape(args.direction)} at layer {args.steer_layer}</h1>"
        "<p>Greedy, held-out bundled prompts, hybrid detector, Wilson 95% intervals.</p>"
        + svg(rows)
        + "<table border=1><tr><th>alpha</th><th>harmful compliance</th><th>over-refusal</th>"
        "<th>helpful</th><th>degenerate</th></tr>" + table + "</table>" + samples
    )
    (args.out / "steering.html").write_text(page, encoding="utf-8")
    print(f"wrote {args.out / 'steering.html'} and steering.json")


if __name__ == "__main__":
    main()
