"""Steering vectors fitted from contrasting activations: each principle as a residual direction.

Owns: the contrast pairs (a reply that satisfies a principle beside one that violates it, to the
same request) from the constitution's worked examples, the bundled demonstrations (a split of
them) and optionally a run's SL-CAI traces (draft vs final) and preferences (chosen vs
rejected); ``fit_steering`` (mean difference, or a linear probe on the paired differences, at
chosen layers, written as ``vectors.safetensors`` for ``SPEC+steer:PATH@ALPHA``); and
``direction_auc``, how well each direction separates the two on held-out demonstrations.
Must not know: how the vectors are applied at inference (``cai.backends._steer``) or evaluated
in generation.

A request that is (after whitespace and case folding) one of the bundled held-out evaluation
prompts is never used, whatever file it comes from.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cai.backends._probe import FeatureReader
from cai.backends._steer import DirectionMeta, SteerMeta, read_vectors, write_vectors
from cai.constitution import (
    Constitution,
    demo_split,
    load_comparison_demonstrations,
    load_critique_demonstrations,
)
from cai.errors import InputError
from cai.records import PreferenceRecord, SLCAIRecord
from cai.store import read_jsonl
from cai.train._common import _versions
from cai.train.probe import _fit

Split = Literal["train", "heldout"]


@dataclass(frozen=True, slots=True)
class ContrastPair:
    """Two replies to one request under one principle: the first satisfies it, the second not."""

    principle_id: str
    prompt: str
    satisfies: str
    violates: str
    source: str


@dataclass(frozen=True)
class SteerConfig:
    """Settings of a steering fit."""

    layers: tuple[int, ...] = ()
    """Decoder-block outputs to read (1-based); empty: ``depths`` of the model's depth."""
    depths: tuple[float, ...] = (0.3, 0.5, 0.7)
    """Default layers as fractions of the depth (on 30 layers: 9, 15, 21)."""
    method: Literal["mean_difference", "probe"] = "mean_difference"
    """How a direction is made from the pairs (see ``SteerMeta.method``)."""
    l2: float = 1e-2
    """L2 strength of the probe on standardised differences."""
    min_pairs: int = 4
    """A principle with fewer training pairs gets no direction of its own (its tier's still
    uses them)."""
    batch_size: int = 8
    """Replies per forward pass."""
    max_length: int = 384
    """Tokens read per reply (user turn included)."""

    def resolve_layers(self, n_layers: int) -> list[int]:
        """The layers to read, checked: 1 .. n_layers - 1 (the last output is normalised)."""
        top = n_layers - 1
        if self.layers:
            bad = [x for x in self.layers if not 1 <= x <= top]
            if bad:
                raise InputError(f"layer {bad[0]} out of range: use 1 to {top} on this model")
            return sorted(set(self.layers))
        return sorted({min(top, max(1, round(d * n_layers))) for d in self.depths})


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _heldout_prompts() -> set[str]:
    from cai.store import load_prompts

    out: set[str] = set()
    for name in ("harmful", "borderline", "helpful"):
        out |= {_norm(p.text) for p in load_prompts(f"builtin:{name}", split="heldout")}
    return out


def contrast_pairs(
    constitution: Constitution, *, split: Split = "train", run_dir: str | Path | None = None
) -> list[ContrastPair]:
    """Every contrast pair of ``split``: worked examples (train only), demonstrations, run files."""
    out: list[ContrastPair] = []
    if split == "train":
        for ex in constitution.few_shot:
            out.append(
                ContrastPair(ex.principle_id, ex.prompt, ex.revision, ex.response, "few_shot")
            )
    for d in load_critique_demonstrations(constitution=constitution):
        if demo_split(d.id) == split:
            src = f"critique_demonstrations:{split}"
            out.append(ContrastPair(d.principle_id, d.prompt, d.revision, d.draft, src))
    for c in load_comparison_demonstrations(constitution=constitution):
        if demo_split(c.id) == split:
            good, bad = (
                (c.response_a, c.response_b) if c.label == "a" else (c.response_b, c.response_a)
            )
            src = f"comparison_demonstrations:{split}"
            out.append(ContrastPair(c.principle_id, c.prompt, good, bad, src))
    if run_dir is not None and split == "train":
        out += _run_pairs(Path(run_dir), constitution)
    held = _heldout_prompts()
    return [p for p in out if _norm(p.prompt) not in held]


def _run_pairs(run: Path, constitution: Constitution) -> list[ContrastPair]:
    """A run's SL-CAI traces (draft violates, final satisfies) and AI-feedback preferences."""
    sl, prefs = run / "data" / "sl_cai.jsonl", run / "data" / "preferences.jsonl"
    if not sl.is_file() and not prefs.is_file():
        raise InputError(f"{run}: no data/sl_cai.jsonl or data/preferences.jsonl (not a run dir)")
    known = {p.id for p in constitution.principles}
    out: list[ContrastPair] = []
    if sl.is_file():
        for r in read_jsonl(sl, SLCAIRecord, allow_torn_tail=True):
            if r.degenerate is not None or not r.rounds or _norm(r.final) == _norm(r.draft):
                continue
            for pid in dict.fromkeys(x.principle_id for x in r.rounds):
                if pid in known:
                    out.append(ContrastPair(pid, r.prompt.text, r.final, r.draft, "run:sl_cai"))
    if prefs.is_file():
        for p in read_jsonl(prefs, PreferenceRecord, allow_torn_tail=True):
            users = [m.content for m in p.prompt if m.role == "user"]
            if not users or not p.chosen or not p.rejected:
                continue
            good, bad = p.chosen[-1].content, p.rejected[-1].content
            for pid in p.principle_ids:
                if pid in known and _norm(good) != _norm(bad):
                    out.append(ContrastPair(pid, users[-1], good, bad, "run:preferences"))
    return out


def direction_groups(
    constitution: Constitution,
    pairs: Sequence[ContrastPair],
    ids: Sequence[str],
    min_pairs: int,
    where: str,
) -> dict[str, tuple[Literal["principle", "tier"], list[str]]]:
    """Direction id -> (kind, principles). ``ids`` name principles or tiers; none: every tier and
    every principle with at least ``min_pairs`` pairs. InputError for an unknown id."""
    by_principle = {p.id: p for p in constitution.principles}
    count: dict[str, int] = {}
    for p in pairs:
        count[p.principle_id] = count.get(p.principle_id, 0) + 1
    tiers = {
        t: [p.id for p in constitution.principles if p.tier == t] for t in constitution.priority
    }
    out: dict[str, tuple[Literal["principle", "tier"], list[str]]] = {}
    wanted = list(ids) or [
        *[t for t, members in tiers.items() if any(count.get(m) for m in members)],
        *[p for p in by_principle if count.get(p, 0) >= min_pairs],
    ]
    for i in wanted:
        if i in by_principle:
            out[i] = ("principle", [i])
        elif i in tiers:
            out[i] = ("tier", tiers[i])
        else:
            raise InputError(f"{where}: unknown principle or tier {i!r}")
        if not any(count.get(m) for m in out[i][1]):
            raise InputError(f"{where}: no contrast pairs for {i!r}")
    return out


def _read(
    reader: FeatureReader, pairs: Sequence[ContrastPair], layers: list[int]
) -> tuple[Any, Any, list[float]]:
    """Features [n, 2, L, H] (satisfying, violating) and the median token norm per layer."""
    import torch

    rows = [(p.prompt, r) for p in pairs for r in (p.satisfies, p.violates)]
    feats = torch.tensor(reader.features(rows, layers), dtype=torch.float64)
    norms = torch.tensor(reader.last_norms, dtype=torch.float64)  # [2n, L]
    shape = (len(pairs), 2, len(layers), feats.shape[-1])
    return feats.reshape(shape), norms, [float(x) for x in norms.median(0).values]


def auc(pos: Any, neg: Any) -> float:
    """P(a satisfying score > a violating one), ties half (Mann-Whitney)."""
    diff = pos.reshape(-1, 1) - neg.reshape(1, -1)
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def _direction(sat: Any, vio: Any, method: str, l2: float) -> Any:
    """Unit direction [H] from paired features sat, vio [n, H]."""
    import torch

    diff = sat - vio
    if method == "probe":
        sd = torch.cat([sat, vio]).std(0) + 1e-6
        w = _fit(diff / sd, torch.ones(len(diff), dtype=torch.float64), l2) / sd
    else:
        w = diff.mean(0)
    return w / w.norm().clamp(min=1e-12)


def _digest(pairs: Iterable[ContrastPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps(asdict(p), sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def fit_steering(
    model: str,
    constitution: Constitution,
    out: str | Path,
    *,
    ids: Sequence[str] = (),
    config: SteerConfig | None = None,
    run_dir: str | Path | None = None,
    where: str = "constitution",
) -> SteerMeta:
    """Fit one direction per principle (or tier) and write ``out`` (+ sidecar JSON)."""
    import torch

    cfg = config or SteerConfig()
    pairs = contrast_pairs(constitution, split="train", run_dir=run_dir)
    groups = direction_groups(constitution, pairs, ids, cfg.min_pairs, where)
    used = sorted({m for _, members in groups.values() for m in members})
    pairs = [p for p in pairs if p.principle_id in used]
    start = time.perf_counter()
    reader = FeatureReader(model, batch_size=cfg.batch_size, max_length=cfg.max_length)
    n_layers = reader.layers
    layers = cfg.resolve_layers(n_layers)
    reader.keep_layers(max(layers))
    feats, _, norms = _read(reader, pairs, layers)
    config_model = reader.model.config
    hidden = int(config_model.hidden_size)
    name = str(getattr(config_model, "_name_or_path", model))
    reader.close()
    tensors: dict[str, Any] = {}
    metas: list[DirectionMeta] = []
    for did, (kind, members) in groups.items():
        idx = [i for i, p in enumerate(pairs) if p.principle_id in members]
        rows, aucs = [], []
        for li in range(len(layers)):
            sat, vio = feats[idx, 0, li], feats[idx, 1, li]
            u = _direction(sat, vio, cfg.method, cfg.l2)
            rows.append(u)
            aucs.append(round(auc(sat @ u, vio @ u), 4))
        tensors[did] = torch.stack(rows).float()
        by_source: dict[str, int] = {}
        for i in idx:
            by_source[pairs[i].source] = by_source.get(pairs[i].source, 0) + 1
        metas.append(
            DirectionMeta(
                id=did,
                kind=kind,
                principles=members,
                pairs=len(idx),
                by_source=by_source,
                train_auc=aucs,
            )
        )
    import importlib.metadata as md

    meta = SteerMeta(
        model=model,
        model_name=name,
        hidden_size=hidden,
        num_layers=n_layers,
        layers=layers,
        method=cfg.method,
        residual_norm=[round(x, 4) for x in norms],
        directions=metas,
        data=sorted({p.source for p in pairs}),
        data_sha256=_digest(pairs),
        constitution=constitution.label(),
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        versions={
            "cai": md.version("constitutional-ai"),
            **_versions(),
            "fit_seconds": f"{time.perf_counter() - start:.1f}",
        },
    )
    write_vectors(out, meta, tensors)
    return meta


@dataclass(frozen=True)
class AucRow:
    """How well one direction separates held-out satisfying from violating replies at a layer."""

    direction: str
    layer: int
    auc: float
    ci95: tuple[float, float]
    pairs: int


def direction_auc(
    vectors: str | Path,
    constitution: Constitution,
    *,
    model: str | None = None,
    split: Split = "heldout",
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 8,
    max_length: int = 384,
) -> list[AucRow]:
    """Per direction and recorded layer: AUC of the projection on ``split`` demonstrations, with a
    bootstrap 95% interval over pairs. ``model`` (default: the file's) may be another model of
    the same shape, for example a trained one: does training move the principle?"""
    import numpy as np

    from cai.scoring import bootstrap_ci

    meta, tensors = read_vectors(vectors)
    pairs = contrast_pairs(constitution, split=split)
    reader = FeatureReader(model or meta.model, batch_size=batch_size, max_length=max_length)
    if int(reader.model.config.hidden_size) != meta.hidden_size:
        raise InputError(f"{vectors}: vectors of hidden size {meta.hidden_size}, model differs")
    reader.keep_layers(max(meta.layers))
    members = {d.id: set(d.principles) for d in meta.directions}
    pairs = [p for p in pairs if any(p.principle_id in m for m in members.values())]
    if not pairs:
        raise InputError(f"{vectors}: no {split} pairs for any of its directions")
    feats, _, _ = _read(reader, pairs, meta.layers)
    reader.close()
    out: list[AucRow] = []
    for d in meta.directions:
        idx = [i for i, p in enumerate(pairs) if p.principle_id in members[d.id]]
        if not idx:
            continue
        for li, layer in enumerate(meta.layers):
            u = tensors[d.id][li].double()
            s = (feats[idx, 0, li] @ u).numpy()
            v = (feats[idx, 1, li] @ u).numpy()

            def stat(rows: Any, s: Any = s, v: Any = v) -> float:
                r = rows.astype(np.int64)
                return auc_np(s[r], v[r])

            lo, hi = bootstrap_ci(list(range(len(idx))), stat, n_boot=n_boot, seed=seed)
            out.append(
                AucRow(d.id, layer, round(auc_np(s, v), 4), (round(lo, 4), round(hi, 4)), len(idx))
            )
    return out


def auc_np(pos: Any, neg: Any) -> float:
    """``auc`` on numpy arrays."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())
