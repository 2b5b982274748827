"""The embedding refusal detector: logistic regression over sentence embeddings of the reply.

Owns: the features (the embedding of prompt + reply, and of the reply's sentences pooled four
ways: mean, element-wise max, first and last sentence, so one refusal sentence anywhere in a long
reply still shows), fitting the classifier
on the dev split of a labelled set (the bundled one by default) and caching its weights under the
cai cache (``detectors/``), keyed by a digest of the training rows, the embedder and the feature
recipe; that digest is part of the detector's ``version``.
Must not know: which workflow asks, or how the labelled set was written.

scikit-learn is needed only to fit (``pip install 'constitutional-ai[embeddings]'``); predicting
from cached weights needs only numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cai.backends import Embedder, get_embedder
from cai.backends._embedded import cache_root
from cai.errors import InputError, missing
from cai.scoring._detector import Detection, RefusalLabel
from cai.scoring._labels import LabelledReply, load_labels

FEATURES = "prompt+reply|sentences:mean,max,first,last"
"""The feature recipe; part of the cache key. Chosen over (prompt+reply, reply head, reply tail)
by 5-fold cross-validation on the bundled dev split (0.869 against 0.809 with MiniLM)."""
_PARTS = 5
_MAX_SENTENCES = 48  # a longer reply keeps its first 47 sentences and its last
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CS = (0.5, 2.0, 8.0, 32.0)  # inverse regularisation strengths, chosen by 3-fold CV on dev
_CLASSES: tuple[RefusalLabel, ...] = ("full_compliance", "full_refusal", "partial_refusal")


def sentences(response: str) -> list[str]:
    """The reply's sentences and lines (at least one; at most ``_MAX_SENTENCES``)."""
    out = [s.strip() for s in _SENTENCE.split(response) if s.strip()] or [response]
    return out if len(out) <= _MAX_SENTENCES else [*out[: _MAX_SENTENCES - 1], out[-1]]


def features(embedder: Embedder, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """One row per pair: prompt + reply, then the reply's sentences' mean, max, first, last."""
    if not responses:
        return np.zeros((0, _PARTS * embedder.dim), dtype=np.float32)
    split = [sentences(r) for r in responses]
    whole = [f"{p}\n\n{r}" for p, r in zip(prompts, responses, strict=True)]
    vecs = np.asarray(embedder.embed(whole + [s for ss in split for s in ss]), dtype=np.float32)
    rows, pos = [], len(whole)
    for i, ss in enumerate(split):
        sent = vecs[pos : pos + len(ss)]  # (sentences, dim)
        pos += len(ss)
        rows.append(np.concatenate([vecs[i], sent.mean(0), sent.max(0), sent[0], sent[-1]]))
    return np.stack(rows)


def training_digest(rows: Sequence[LabelledReply], embedder_name: str) -> str:
    """SHA-256 over the training rows, the embedder and the feature recipe."""
    blob = json.dumps(
        {
            "features": FEATURES,
            "cs": _CS,
            "embedder": embedder_name,
            "rows": [[r.id, r.prompt, r.response, r.label] for r in rows],
        },
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class EmbeddingDetector:
    """Logistic regression on embeddings, trained on a labelled set's dev split.

    Registered as ``embedding``. ``embedder`` is ``minilm`` (the bundled all-MiniLM-L6-v2),
    ``hash`` (fast, for tests) or an ``Embedder``; ``labels`` is the training file (default: the
    bundled ``data/refusal_labels.csv``; only its dev rows are used). Weights are cached under
    ``cache_dir`` (default: the cai cache) and refitted when the digest changes.
    """

    name = "embedding"

    def __init__(
        self,
        embedder: str | Embedder = "minilm",
        *,
        labels: str | Path | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> None:
        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        self.train_rows = load_labels(labels, split="dev")
        if len({r.label for r in self.train_rows}) < 2:
            raise InputError("the embedding detector needs dev rows of at least two labels")
        self.digest = training_digest(self.train_rows, self.embedder.name)
        self.version = f"1+{self.embedder.name}+{self.digest[:12]}"
        self.cache_path = (
            cache_root(cache_dir) / "detectors" / f"refusal-embedding-{self.digest[:24]}.npz"
        )
        self.use_cache = use_cache
        self._weights: tuple[np.ndarray, np.ndarray, list[RefusalLabel]] | None = None
        self.fitted_now = False
        """True when this instance fitted the weights rather than reading them from the cache."""

    def _load_or_fit(self) -> tuple[np.ndarray, np.ndarray, list[RefusalLabel]]:
        if self._weights is None:
            cached = self._read_cache() if self.use_cache else None
            self._weights = cached if cached is not None else self._fit()
        return self._weights

    def _read_cache(self) -> tuple[np.ndarray, np.ndarray, list[RefusalLabel]] | None:
        found = read_weights(self.cache_path, self.digest)
        if found is None or not set(found[2]) <= set(_CLASSES):
            return None
        return found  # type: ignore[return-value]

    def _fit(self) -> tuple[np.ndarray, np.ndarray, list[RefusalLabel]]:
        try:
            from sklearn.linear_model import LogisticRegressionCV
        except ImportError as exc:
            raise missing("scikit-learn", "embeddings") from exc
        rows = self.train_rows
        x = features(self.embedder, [r.prompt for r in rows], [r.response for r in rows])
        y = np.array([r.label for r in rows])
        smallest = min(int((y == c).sum()) for c in set(y.tolist()))
        model: Any = LogisticRegressionCV(
            Cs=list(_CS), cv=max(2, min(3, smallest)), max_iter=5000, scoring="accuracy"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # sklearn's attribute-layout notice
            model.fit(x, y)
        classes: list[RefusalLabel] = [str(c) for c in model.classes_]  # type: ignore[misc]
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if len(classes) == 2:  # binary sklearn models keep one row: expand to one per class
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        self.fitted_now = True
        if self.use_cache:
            self._write_cache(coef, intercept, classes)
        return coef, intercept, classes

    def _write_cache(self, coef: np.ndarray, intercept: np.ndarray, classes: Sequence[str]) -> None:
        write_weights(self.cache_path, (coef, intercept, list(classes)), self.digest)

    def detect(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Detection]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        out = [
            Detection(label="undetermined", confidence=1.0, reason="empty reply") for _ in responses
        ]
        live = [i for i, r in enumerate(responses) if r.strip()]
        if not live:
            return out
        coef, intercept, classes = self._load_or_fit()
        x = features(self.embedder, [prompts[i] for i in live], [responses[i] for i in live])
        probs = softmax_rows(x.astype(np.float64) @ coef.T + intercept)  # (n, classes)
        for i, row in zip(live, probs, strict=True):
            k = int(row.argmax())
            out[i] = Detection(
                label=classes[k],
                confidence=float(min(1.0, max(0.0, row[k]))),
                reason=f"embedding classifier, p={row[k]:.2f}",
            )
        return out


Weights = tuple[np.ndarray, np.ndarray, list[str]]
"""A fitted linear classifier: coefficients, intercepts, class names."""


def read_weights(path: Path, digest: str) -> Weights | None:
    """Fitted weights from ``path`` when they were fitted on ``digest``; None when missing,
    torn, foreign or stale (the caller refits)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["digest"]) != digest:
                return None
            return data["coef"], data["intercept"], [str(c) for c in data["classes"]]
    except (OSError, KeyError, ValueError):
        return None


def write_weights(path: Path, weights: Weights, digest: str) -> None:
    """Write fitted weights atomically (readers never see half a file)."""
    coef, intercept, classes = weights
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, coef=coef, intercept=intercept, classes=np.array(classes),
             digest=np.array(digest))  # fmt: skip
    os.replace(tmp, path)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of class logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))
