"""A reward probe fitted on labelled comparisons: the frozen model's hidden states, a linear head.

Owns: ``ProbeConfig``, ``ProbePair`` and ``train_reward_probe``: read every reply's features
once (one forward pass each, no backward pass), choose the layer and the L2 strength by k-fold
cross-validation on the training pairs, fit the Bradley-Terry head
(``P(A better) = sigmoid(w . (f_A - f_B))``, both orders) on all of them and save
``reward_probe.json`` beside a ``train_meta.json``. The result loads as ``probe:OUT_DIR``.
Must not know: where the pairs came from or what the probe is then used for.

Why a probe: the 135M embedded model cannot be taught to answer a comparison with a letter in
the few hundred LoRA steps a CPU affords (it learned to say "B"), but its hidden states already
separate a reply that helps with harm from one that declines, and a linear head fitted to
convergence on a few hundred pairs reads that out (bench/README.md has the figures).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cai.backends import resolve_spec
from cai.backends._probe import FeatureReader, ProbeFile, write_probe
from cai.errors import InputError
from cai.train._common import META, TrainResult, _versions, staging
from cai.train._data import DataFile


@dataclass(frozen=True)
class ProbePair:
    """One labelled comparison: which of two replies to a request better meets a question."""

    question: str
    prompt: str
    response_a: str
    response_b: str
    a_better: bool


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of a reward-probe fit."""

    depths: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85)
    """Candidate layers as fractions of the model's depth (on 30 layers: 12, 16, 21, 26)."""
    l2: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    """Candidate L2 strengths on the standardised features."""
    folds: int = 5
    """Cross-validation folds over the pairs (fewer when there are under two pairs a fold)."""
    max_length: int = 512
    """Tokens read per reply (user turn included)."""
    batch_size: int = 8
    """Replies per forward pass."""
    seed: int = 0
    """Seed of the fold assignment."""

    def layers(self, n_layers: int) -> list[int]:
        return sorted({min(n_layers, max(1, round(d * n_layers))) for d in self.depths})


def _fit(diffs: Any, labels: Any, l2: float) -> Any:
    """The Bradley-Terry head on standardised differences, both orders, L-BFGS."""
    import torch

    x = torch.cat([diffs, -diffs])
    y = torch.cat([labels, 1 - labels])
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y) + l2 * (w @ w)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return w.detach()


def _accuracy(w: Any, diffs: Any, labels: Any) -> float:
    return float((((diffs @ w) > 0).double() == labels).double().mean())


def train_reward_probe(
    base_model: str,
    pairs: Sequence[ProbePair],
    out_dir: str | Path,
    config: ProbeConfig | None = None,
    *,
    user_turn: str,
    request_pattern: str,
    data: Sequence[DataFile] = (),
) -> TrainResult:
    """Fit a reward probe on ``pairs`` and save it to ``out_dir`` (``probe:OUT_DIR``)."""
    import torch

    cfg = config or ProbeConfig()
    folds_n = min(cfg.folds, len(pairs) // 2)  # a quick trial (--limit) fits on fewer folds
    if folds_n < 2:
        raise InputError(f"a reward probe needs at least 4 pairs, got {len(pairs)}")
    out = Path(out_dir)
    start = time.perf_counter()
    reader = FeatureReader(base_model, batch_size=cfg.batch_size, max_length=cfg.max_length)
    layers = cfg.layers(reader.layers)
    reader.keep_layers(max(layers))
    rows = []
    for p in pairs:
        user = user_turn.format(question=p.question, prompt=p.prompt)
        rows += [(user, p.response_a), (user, p.response_b)]
    feats = torch.tensor(reader.features(rows, layers), dtype=torch.float64)  # [2n, L, d]
    reader.close()
    read_seconds = time.perf_counter() - start
    labels = torch.tensor([float(p.a_better) for p in pairs], dtype=torch.float64)
    idx = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(idx)
    folds = [idx[k::folds_n] for k in range(folds_n)]
    grid: list[dict[str, Any]] = []
    for li, layer in enumerate(layers):
        f = feats[:, li]
        sd = f.std(0) + 1e-6
        diffs = (f[0::2] - f[1::2]) / sd
        for l2 in cfg.l2:
            accs = []
            for fold in folds:
                held = set(fold)
                tr = [i for i in idx if i not in held]
                w = _fit(diffs[tr], labels[tr], l2)
                accs.append(_accuracy(w, diffs[fold], labels[fold]))
            grid.append({"layer": layer, "l2": l2, "cv_accuracy": sum(accs) / len(accs)})
    best = max(grid, key=lambda g: (g["cv_accuracy"], g["l2"]))  # a tie: the stronger L2
    li = layers.index(best["layer"])
    f = feats[:, li]
    sd = f.std(0) + 1e-6
    diffs = (f[0::2] - f[1::2]) / sd
    w = _fit(diffs, labels, best["l2"])
    train_acc = _accuracy(w, diffs, labels)
    loss = float(torch.nn.functional.binary_cross_entropy_with_logits(diffs @ w, labels).item())
    seconds = time.perf_counter() - start
    fit = {
        "pairs": len(pairs),
        "folds": folds_n,
        "layers_tried": layers,
        "grid": grid,
        "chosen": best,
        "train_accuracy": train_acc,
        "read_seconds": round(read_seconds, 3),
    }
    probe = ProbeFile(
        base_model=base_model,
        layer=best["layer"],
        user_turn=user_turn,
        request_pattern=request_pattern,
        weights=(w / sd).tolist(),
        max_length=cfg.max_length,
        fit=fit,
    )
    with staging(out) as tmp:
        write_probe(probe, tmp)
        result = TrainResult(
            method="reward",
            base_model=base_model,
            base_path=resolve_spec(base_model).model,
            saved="probe",
            out_dir=str(out.resolve()),
            data=list(data),
            n_examples=len(pairs),
            steps=0,
            final_loss=loss,
            seconds=round(seconds, 3),
            config={"probe": asdict(cfg), **{k: v for k, v in best.items()}},
            versions=_versions(),
        )
        (tmp / META).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return result
