"""Open models by spec once per run, cached in the run's SQLite response cache.

Owns: one backend instance per (spec, dtype), each wrapped by ``CachedBackend``, closed together;
with Ray on, each instance is a ``RayBackend`` sharding its calls over actors.
Must not know: which stage uses which role.
"""

from __future__ import annotations

from typing import Any

from cai.backends import Backend, CachedBackend, load_backend, parse_spec
from cai.pipeline._recipe import RaySettings
from cai.store import ResponseCache

BATCHED_PREFIXES = frozenset({"embedded", "hf", "run"})
"""Spec prefixes served by the transformers backend (they take batch_size and dtype)."""


class ModelPool:
    """Lazily loaded, cached backends; ``close()`` releases them all."""

    def __init__(
        self, cache: ResponseCache, *, batch_size: int = 32, ray: RaySettings | None = None
    ) -> None:
        self.cache = cache
        self.batch_size = batch_size
        self.ray = ray if ray is not None and ray.enabled else None
        self._open: dict[tuple[str, str], CachedBackend] = {}

    def get(self, spec: str, *, dtype: str = "auto") -> Backend:
        """The backend for ``spec``; ``dtype`` only matters for transformers backends."""
        prefix, _ = parse_spec(spec)
        key = (spec, dtype if prefix in BATCHED_PREFIXES else "")
        if key not in self._open:
            opts: dict[str, Any] = {}
            if prefix in BATCHED_PREFIXES:
                opts = {"batch_size": self.batch_size, "dtype": dtype}
            self._open[key] = CachedBackend(self._load(spec, opts), self.cache)
        return self._open[key]

    def _load(self, spec: str, opts: dict[str, Any]) -> Backend:
        if self.ray is None:
            return load_backend(spec, **opts)
        from cai.backends import RayBackend

        if self.ray.gpus_per_worker > 0 and "dtype" in opts:
            opts = {**opts, "device": "cuda"}
        return RayBackend(
            spec,
            workers=self.ray.workers,
            address=self.ray.address,
            num_cpus=self.ray.cpus_per_worker,
            num_gpus=self.ray.gpus_per_worker,
            mode=self.ray.mode,
            **opts,
        )

    def release(self, spec: str) -> None:
        """Close every instance of ``spec`` (e.g. before retraining the model it names)."""
        for key in [k for k in self._open if k[0] == spec]:
            self._open.pop(key).close()

    def forget(self) -> None:
        """Empty every open backend's key/value store (a stage's rows are no use to the next)."""
        for backend in self._open.values():
            forget = getattr(backend.inner, "forget", None)
            if callable(forget):
                forget()

    def close(self) -> None:
        for backend in self._open.values():
            backend.close()
        self._open.clear()
