"""A backend wrapper that answers repeated calls from the SQLite response cache.

Only the misses reach the wrapped backend, in one batch, so a resumed run costs no model calls
for work already done. Errors are never cached.
"""

from __future__ import annotations

from collections.abc import Sequence

from cai.backends._protocol import Backend
from cai.records import Generation, GenerationRequest, SamplingParams, ScoreRequest, digest
from cai.store import ResponseCache


class CachedBackend:
    """Wraps any Backend; same interface."""

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.spec = inner.spec
        self.hits = 0
        self.misses = 0

    def _key(self, kind: str, request: object, params: object | None) -> str:
        return digest({"model": self.spec, "kind": kind, "req": request, "params": params}, 32)

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        # Default-valued settings are left out of the key, so adding a setting keeps old keys.
        p = params.model_dump(mode="json", exclude_defaults=True)
        reqs = [r.model_dump(mode="json") for r in requests]
        keys = [self._key("generate", r, p) for r in reqs]
        found = self.cache.get_many(list(set(keys)))
        out: list[Generation | None] = [None] * len(requests)
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k in found:
                out[i] = Generation.model_validate({**found[k], "cached": True})
            elif k not in todo:
                todo[k] = i
        self.hits += len(requests) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.generate([requests[i] for i in todo.values()], params)
            rows = []
            by_key: dict[str, Generation] = {}
            for (k, i), g in zip(todo.items(), fresh, strict=True):
                by_key[k] = g
                if g.finish_reason != "error":
                    rows.append((k, self.spec, "generate", _json(reqs[i]), g.model_dump()))
            self.cache.put_many(rows)
            for i, k in enumerate(keys):
                if out[i] is None:
                    out[i] = by_key[k]
        return [g for g in out if g is not None]

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        reqs = [r.model_dump(mode="json") for r in requests]
        keys = [self._key("score", r, None) for r in reqs]
        found = self.cache.get_many(list(set(keys)))
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            fresh = self.inner.score([requests[i] for i in missing])
            rows = [
                (keys[i], self.spec, "score", _json(reqs[i]), s)
                for i, s in zip(missing, fresh, strict=True)
            ]
            self.cache.put_many(rows)
            found.update({keys[i]: s for i, s in zip(missing, fresh, strict=True)})
        self.hits += len(requests) - len(missing)
        self.misses += len(missing)
        return [list(found[k]) for k in keys]

    def close(self) -> None:
        self.inner.close()


def _json(obj: object) -> str:
    import json

    return json.dumps(obj, sort_keys=True, ensure_ascii=False)
