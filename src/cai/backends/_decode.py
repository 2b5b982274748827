"""Token-by-token decoding of one transformers batch that sheds its finished rows.

Owns: the decoding loop (the prefill of whatever the cache does not hold yet, then one token
a row a step), the repetition penalty, greedy choice or nucleus sampling with one seeded
generator a row, the end of a row at an end token, and dropping finished rows from the batch
and its cache once that pays for the copy.
Must not know: requests, prompts, templates, tokenizers, stores or layouts. Whether a row's
text hit a stop string is the caller's ``stopped``; what to keep of a row when it leaves is the
caller's ``on_done``. torch and the model are handed in; nothing is imported at
module level beyond the standard library.

Why not ``model.generate``: it keeps every row to the end of the batch, decoding pad tokens
for rows that finished long ago (a third of the row-steps of a batch of revisions). Here a
finished row costs nothing after the next shedding point. Greedy output is the same token for
token as ``generate`` (same positions, masks and float32 logits); only the batch shrinks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Decoding", "decode", "sample_rows"]

_NUCLEUS_CANDIDATES = 256  # top tokens searched first for the nucleus (a full sort is slow)


def sample_rows(
    torch: Any, scores: Any, generators: Sequence[Any], temperature: float, top_p: float
) -> Any:
    """One token a row ([rows] long), each row drawn with its own generator.

    Nucleus sampling: the smallest set of most likely tokens whose mass reaches ``top_p`` (at
    least the top token), renormalised. The nucleus is looked for among the top 256 tokens
    first; a row whose nucleus is wider falls back to a full sort.
    """
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    picks = []
    if top_p >= 1.0:
        for i, gen in enumerate(generators):
            picks.append(torch.multinomial(probs[i], 1, generator=gen))
        return torch.cat(picks)
    k = min(_NUCLEUS_CANDIDATES, int(probs.shape[-1]))
    top_p_, top_i = probs.topk(k, dim=-1)  # sorted, most likely first
    wide = (top_p_.sum(dim=-1) <= top_p).nonzero().flatten().tolist()
    sorted_wide = probs[wide].sort(dim=-1, descending=True) if wide else None
    for i, gen in enumerate(generators):
        if i in wide and sorted_wide is not None:
            at = wide.index(i)
            p, order = sorted_wide.values[at], sorted_wide.indices[at]
        else:
            p, order = top_p_[i], top_i[i]
        outside = p.cumsum(-1) - p > top_p  # mass before the token already reaches top_p
        kept = p.masked_fill(outside, 0.0)
        picks.append(order[torch.multinomial(kept, 1, generator=gen)])
    return torch.cat(picks)


@dataclass
class Decoding:
    """How to choose tokens and when a row ends."""

    max_new_tokens: int
    end_ids: frozenset[int]
    pad_id: int
    repetition_penalty: float = 1.0
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    generators: Sequence[Any] = ()  # one a row, in batch order (sampling only)
    shed_factor: float = 2.0  # shed once finished rows x steps left >= this x rows present
    stopped: Callable[[list[int]], bool] | None = None  # a row's new tokens hit a stop string


def decode(
    torch: Any,
    model: Any,
    ids: Any,
    mask: Any,
    cache: Any,
    how: Decoding,
    on_done: Callable[[int, int, list[int], int], None] | None = None,
) -> list[list[int]]:
    """Generate for every row of ``ids`` (left/middle padded, ``mask`` 1 on real tokens).

    ``cache`` holds the key/values of the first ``cache.get_seq_length()`` columns (or none);
    it must support ``batch_select_indices``. Returns each row's new tokens, up to and
    including its end token. ``on_done(row, position, tokens, fed)`` is called for every row
    before it leaves the batch (finished and shed, or at the end), with its position in the
    shrunken batch, its new tokens and how many of them the cache holds.
    """
    past = cache.get_seq_length()
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    feed_ids, feed_pos = ids[:, past:], positions[:, past:]
    last_pos = positions[:, -1]
    # What the repetition penalty looks at, like ``generate``: the whole sequence (kept only
    # when there is a penalty).
    seq = ids
    present = list(range(int(ids.shape[0])))  # original row of each position in the batch
    out: list[list[int]] = [[] for _ in present]
    done = [False] * len(present)
    ends = torch.tensor(sorted(how.end_ids), dtype=torch.long, device=ids.device)
    generators = list(how.generators)
    penalty = None
    if how.repetition_penalty != 1.0:
        from transformers import RepetitionPenaltyLogitsProcessor

        penalty = RepetitionPenaltyLogitsProcessor(how.repetition_penalty)
    fed = 0
    for step in range(how.max_new_tokens):
        logits = model(
            input_ids=feed_ids,
            attention_mask=mask,
            position_ids=feed_pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        scores = logits.to(dtype=torch.float32)
        if penalty is not None:
            scores = penalty(seq, scores)
        finished = torch.tensor([done[row] for row in present], device=ids.device)
        if how.temperature > 0:  # rows that already ended (not yet shed) draw nothing
            active = (~finished).nonzero().flatten()
            gens = [generators[present[pos]] for pos in active.tolist()]
            picks = sample_rows(torch, scores[active], gens, how.temperature, how.top_p)
            chosen = torch.full_like(finished, how.pad_id, dtype=torch.long)
            chosen[active] = picks
        else:
            chosen = scores.argmax(dim=-1).masked_fill(finished, how.pad_id)
        ended = torch.isin(chosen, ends) & ~finished
        for pos, (row, token) in enumerate(zip(present, chosen.tolist(), strict=True)):
            if not done[row]:
                out[row].append(token)
                done[row] = bool(ended[pos]) or (how.stopped is not None and how.stopped(out[row]))
        if all(done[row] for row in present) or step == how.max_new_tokens - 1:
            break
        if penalty is not None:
            seq = torch.cat([seq, chosen[:, None]], dim=-1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        last_pos = last_pos + 1
        feed_ids, feed_pos = chosen[:, None], last_pos[:, None]
        fed += 1
        gone = [pos for pos, row in enumerate(present) if done[row]]
        left = how.max_new_tokens - step - 1
        if gone and len(gone) * left >= how.shed_factor * len(present):
            if on_done is not None:
                for pos in gone:
                    on_done(present[pos], pos, out[present[pos]], fed)
            keep = [pos for pos, row in enumerate(present) if not done[row]]
            index = torch.tensor(keep, dtype=torch.long, device=ids.device)
            cache.batch_select_indices(index)
            mask = mask.index_select(0, index)
            if penalty is not None:
                seq = seq.index_select(0, index)
            feed_ids, feed_pos = feed_ids.index_select(0, index), feed_pos.index_select(0, index)
            last_pos = last_pos.index_select(0, index)
            present = [present[pos] for pos in keep]
    if on_done is not None:
        for pos, row in enumerate(present):
            on_done(row, pos, out[row], fed)
    return out
