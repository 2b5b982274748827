"""Where each row of a transformers batch sits: padding around shared and reused tokens.

Owns: the batch layout ``[shared prefix][pad | reused own tokens][pad | new own tokens]`` (plain
left padding and middle padding are its special cases), the record of that layout a backend
needs after generating, and the choice of how many stored tokens each row reuses.
Must not know: models, caches, requests or sampling. torch is handed in, never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Layout", "pad_rows", "reuse_plan"]


@dataclass
class Layout:
    """A batch as it goes into ``generate``: ids, mask, the starting cache and where rows sit."""

    ids: Any
    mask: Any
    cache: Any = None
    cascade: bool = False
    shared: int = 0  # columns [0, shared): the prefix every row shares
    prefix: Any = None  # its key/values, one row a layer (cascade only)
    reuse: list[int] = field(default_factory=list)  # own tokens a row took from the store
    width_reused: int = 0  # columns of reused own tokens, right-aligned per row
    width_new: int = 0  # columns of own tokens computed now, right-aligned per row

    def own_columns(self, row: int, length: int) -> list[int]:
        """Columns (after the prefix) holding row ``row``'s own tokens; ``length``: its tokens."""
        reused = self.reuse[row] if self.reuse else 0
        width = self.width_reused + self.width_new
        cols = list(range(self.width_reused - reused, self.width_reused))
        return cols + list(range(width - (length - self.shared - reused), width))


def pad_rows(
    torch: Any,
    rows: Sequence[list[int]],
    pad_id: int,
    shared: int = 0,
    reuse: Sequence[int] | None = None,
) -> tuple[Any, Any, int, int]:
    """Ids and attention mask (CPU tensors) for ``rows``, and the two own-token widths.

    Every row starts with the same ``shared`` tokens; behind them its first ``reuse[i]`` own
    tokens are right-aligned in one block and the rest in the next. With nothing shared or
    reused this is plain left padding.
    """
    reuse = list(reuse) if reuse is not None else [0] * len(rows)
    width_reused = max(reuse, default=0)
    width_new = max((len(r) - shared - u for r, u in zip(rows, reuse, strict=True)), default=0)
    total = shared + width_reused + width_new
    ids = torch.full((len(rows), total), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), total), dtype=torch.long)
    if shared:
        ids[:, :shared] = torch.tensor(rows[0][:shared], dtype=torch.long)
        mask[:, :shared] = 1
    for i, row in enumerate(rows):
        cut = shared + reuse[i]
        if reuse[i]:
            lo = shared + width_reused - reuse[i]
            ids[i, lo : shared + width_reused] = torch.tensor(row[shared:cut], dtype=torch.long)
            mask[i, lo : shared + width_reused] = 1
        own = row[cut:]
        if own:
            ids[i, total - len(own) :] = torch.tensor(own, dtype=torch.long)
            mask[i, total - len(own) :] = 1
    return ids, mask, width_reused, width_new


def reuse_plan(available: Sequence[int], lengths: Sequence[int]) -> list[int]:
    """How many stored own tokens each row takes: all it can, capped where that pads less.

    Reused tokens sit right-aligned in one block of columns and new tokens in the next, so a
    batch where only some rows have stored tokens can be wider with reuse than without: every
    row pays for ``max(reused) + max(new)`` columns. The cap that minimises twice the new
    width (computed in the prefill, then attended) plus the reused width (attended) wins.
    """

    def cost(cap: int) -> tuple[int, int]:
        taken = [min(a, cap) for a in available]
        new = max(n - t for n, t in zip(lengths, taken, strict=True))
        return 2 * new + max(taken), -cap

    best = min({0, *available}, key=cost)
    return [min(a, best) for a in available]
