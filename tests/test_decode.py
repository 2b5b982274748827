"""The decoding loop that sheds finished rows: same tokens as ``model.generate``, fewer rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402

from cai.backends._cascade import cascade, cascade_cache, install, layer_pairs  # noqa: E402
from cai.backends._decode import Decoding, decode, sample_rows  # noqa: E402

PAD = 0
ROWS = [[5, 9, 14, 3, 77, 21], [8, 2, 61], [40, 41, 42, 43], [7, 7]]


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Any:
    m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return m.eval()


def _left_pad(rows: list[list[int]]) -> tuple[Any, Any]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _reference(model: Any, ids: Any, mask: Any, steps: int, end: int | None) -> list[list[int]]:
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=steps,
        do_sample=False,
        eos_token_id=end,
        pad_token_id=PAD,
        repetition_penalty=1.3,
    )
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = row.index(end) + 1 if end is not None and end in row else len(row)
        rows.append(row[:cut])
    return rows


def _an_end_token(model: Any, ids: Any, mask: Any, steps: int) -> int:
    """A token greedy decoding emits early in some rows and not in others."""
    free = _reference(model, ids, mask, steps, None)
    firsts: Counter[int] = Counter()
    for row in free:
        firsts.update(set(row[: steps // 2]))
    for token, n in firsts.most_common():
        if n < len(free) and token != PAD:
            return token
    pytest.skip("the random model repeats one token in every row")


def test_greedy_matches_generate_while_rows_leave(model: Any) -> None:
    ids, mask = _left_pad(ROWS)
    steps = 12
    end = _an_end_token(model, ids, mask, steps)
    expected = _reference(model, ids, mask, steps, end)
    assert any(len(r) < steps for r in expected), "no row finished early"
    left: list[tuple[int, int, int]] = []
    how = Decoding(steps, frozenset({end}), PAD, repetition_penalty=1.3, shed_factor=0.0)
    with torch.inference_mode():
        got = decode(
            torch,
            model,
            ids,
            mask,
            DynamicCache(config=model.config),
            how,
            lambda row, pos, new, fed: left.append((row, len(new), fed)),
        )
    assert got == expected
    # Every row leaves once; a finished row leaves with all its tokens but the end in the cache.
    assert sorted(r for r, _, _ in left) == list(range(len(ROWS)))
    for row, n, fed in left:
        assert n == len(expected[row]) and fed >= n - 1


def test_cascade_cache_sheds_rows_and_keeps_prefix(model: Any) -> None:
    """Rows sharing a prefix (one copy) decode as they do with the prefix copied per row."""
    assert install(model)
    try:
        prefix = [11, 12, 13, 14, 15, 16, 17]
        # Middle padding: the shared prefix first in every row, the own tokens right-aligned.
        width = max(len(r) for r in ROWS)
        mid_ids, mid_mask = _left_pad(ROWS)
        ids = torch.cat([torch.tensor([prefix] * len(ROWS)), mid_ids], dim=1)
        mask = torch.cat([torch.ones(len(ROWS), len(prefix), dtype=torch.long), mid_mask], dim=1)
        steps = 10
        plain = _reference(model, ids, mask, steps, None)
        end = _an_end_token(model, ids, mask, steps)
        expected = _reference(model, ids, mask, steps, end)
        with torch.inference_mode():
            pre = model(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
            cache = cascade_cache(layer_pairs(pre), width + steps)
            how = Decoding(steps, frozenset({end}), PAD, repetition_penalty=1.3, shed_factor=0.0)
            with cascade(cache):
                got = decode(torch, model, ids, mask, cache, how)
        assert got == expected
        assert plain != expected  # the end token did cut rows short
    finally:
        model.set_attn_implementation("sdpa")


def test_sampling_is_per_row_whatever_the_batch(model: Any) -> None:
    def run(rows: list[list[int]], seeds: list[int]) -> list[list[int]]:
        ids, mask = _left_pad(rows)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        how = Decoding(8, frozenset(), PAD, temperature=0.8, top_p=0.9, generators=gens)
        with torch.inference_mode():
            return decode(torch, model, ids, mask, DynamicCache(config=model.config), how)

    together = run(ROWS, [1, 2, 3, 4])
    alone = [run([r], [s])[0] for r, s in zip(ROWS, [1, 2, 3, 4], strict=True)]
    assert together == alone
    assert run(ROWS, [1, 2, 3, 4]) == together
    assert run(ROWS, [5, 6, 7, 8]) != together


def test_nucleus_sampling_draws_from_the_nucleus_in_proportion() -> None:
    # Row 0: a peaked distribution (nucleus found among the top candidates); row 1: flat over
    # 1,000 tokens (wider than the candidates, so the full sort is used).
    vocab = 1000
    peaked = torch.full((vocab,), -30.0)
    peaked[[3, 10, 20, 30]] = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    flat = torch.zeros(vocab)
    scores = torch.stack([peaked, flat])
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    draws = [sample_rows(torch, scores, gens, 1.0, 0.7).tolist() for _ in range(4000)]
    first = Counter(d[0] for d in draws)
    assert set(first) == {3, 10}  # the 0.7 nucleus: 0.5 + 0.3
    assert abs(first[3] / 4000 - 0.625) < 0.03  # 0.5 / 0.8, renormalised
    second = Counter(d[1] for d in draws)
    assert len(second) > 500  # about 700 tokens in the flat row's nucleus


def test_rows_stop_when_the_caller_says(model: Any) -> None:
    """A stop check (the backend's stop strings) ends each row on its own, others go on."""
    ids, mask = _left_pad(ROWS)
    steps = 10
    free = _reference(model, ids, mask, steps, None)

    def length(row: list[int]) -> int:  # a different stopping point per row
        return 2 + row[0] % 6

    how = Decoding(
        steps,
        frozenset(),
        PAD,
        repetition_penalty=1.3,
        shed_factor=0.0,
        stopped=lambda tokens: len(tokens) >= length(tokens),
    )
    with torch.inference_mode():
        got = decode(torch, model, ids, mask, DynamicCache(config=model.config), how)
    assert got == [row[: length(row)] for row in free]
    assert len({len(r) for r in got}) > 1
