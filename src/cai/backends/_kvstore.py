"""Key/values of recent rows, kept so a later request that extends a row skips its prefill.

Owns: an LRU store of (token sequence -> per-layer key/values) with a byte budget, and the
longest-common-prefix lookup a new row makes against it (automatic prefix caching, as vLLM and
SGLang do it). A revision chat that continues its critique chat, or a scoring request that
repeats a generation prompt, finds the earlier row and reuses everything up to the first token
where the two differ.
Must not know: models, requests, sampling or attention. It stores what the backend hands it:
one-row tensors ``[1, kv_heads, tokens, head_dim]`` per layer, the first ``len(prefix)`` tokens
possibly shared by many entries (the batch's shared prefix, held once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["KV", "KVEntry", "KVStore"]

KV = list[tuple[torch.Tensor, torch.Tensor]]  # one (keys, values) pair per layer


@dataclass
class KVEntry:
    """One row: ``tokens`` whose key/values are ``prefix`` (shared) then ``own``."""

    tokens: torch.Tensor  # int64 [n]
    prefix: KV  # first prefix_length tokens, [1, kv, p, dim]; may be shared with other entries
    own: KV  # the rest, [1, kv, n - p, dim]
    prefix_length: int

    def kv(self, start: int, stop: int) -> KV:
        """Per-layer key/values of tokens ``[start, stop)`` (views where no join is needed)."""
        p = self.prefix_length
        out: KV = []
        for i, (ok, ov) in enumerate(self.own):
            parts_k: list[torch.Tensor] = []
            parts_v: list[torch.Tensor] = []
            if start < p:
                pk, pv = self.prefix[i]
                parts_k.append(pk[:, :, start : min(stop, p)])
                parts_v.append(pv[:, :, start : min(stop, p)])
            if stop > p:
                parts_k.append(ok[:, :, max(start, p) - p : stop - p])
                parts_v.append(ov[:, :, max(start, p) - p : stop - p])
            if len(parts_k) == 1:
                out.append((parts_k[0], parts_v[0]))
            else:
                out.append((torch.cat(parts_k, dim=-2), torch.cat(parts_v, dim=-2)))
        return out

    @property
    def own_bytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.own)


class KVStore:
    """Least-recently-used rows within ``budget_bytes`` of their own key/values.

    Shared prefixes are not counted against the budget: every batch's prefix is one tensor per
    layer, referenced by its rows, and freed with the last of them.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, KVEntry] = OrderedDict()
        self._next = 0
        self.bytes = 0
        self.hits = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def add(self, tokens: Sequence[int], prefix: KV, own: KV, prefix_length: int) -> None:
        if self.budget_bytes <= 0:
            return
        entry = KVEntry(torch.tensor(list(tokens), dtype=torch.long), prefix, own, prefix_length)
        size = entry.own_bytes
        if size > self.budget_bytes:
            return
        self._entries[self._next] = entry
        self._next += 1
        self.bytes += size
        while self.bytes > self.budget_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.own_bytes

    def match(self, row: Sequence[int], limit: int | None = None) -> tuple[KVEntry | None, int]:
        """The entry sharing the longest token prefix with ``row``, and that length.

        The length is capped at ``limit`` (callers keep at least one token of a row to run).
        """
        if not self._entries:
            return None, 0
        query = torch.tensor(list(row), dtype=torch.long)
        cap = len(row) if limit is None else min(limit, len(row))
        best: KVEntry | None = None
        best_length, best_key = 0, -1
        for key, entry in self._entries.items():
            n = min(cap, int(entry.tokens.shape[0]))
            if n <= best_length:
                continue
            differ = torch.nonzero(entry.tokens[:n] != query[:n])
            length = int(differ[0, 0]) if differ.numel() else n
            if length > best_length:
                best, best_length, best_key = entry, length, key
        if best is not None:
            self._entries.move_to_end(best_key)
        return best, best_length
