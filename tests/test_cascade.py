"""Cascade attention: one copy of a shared prefix gives the same attention as a copy per row."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import DynamicCache  # noqa: E402

from cai.backends._cascade import (  # noqa: E402
    CascadeLayer,
    cascade,
    cascade_attention_forward,
    cascade_cache,
)

BATCH, HEADS, KV_HEADS, DIM, PREFIX = 3, 6, 2, 8, 11


def _reference(query: Any, keys: Any, values: Any, mask: Any, causal: bool = False) -> Any:
    """Plain attention over the full per-row keys ([batch, kv, len, dim]), in float64."""
    group = HEADS // KV_HEADS
    k = keys.double().repeat_interleave(group, dim=1)
    v = values.double().repeat_interleave(group, dim=1)
    scores = query.double() @ k.transpose(-1, -2) * DIM**-0.5
    if causal:
        q_len, kv_len = query.shape[2], k.shape[2]
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) @ v).transpose(1, 2)


def _layer_and_module(extra: int = 2) -> tuple[CascadeLayer, DynamicCache, Any]:
    prefix_k = torch.randn(1, KV_HEADS, PREFIX, DIM)
    prefix_v = torch.randn(1, KV_HEADS, PREFIX, DIM)
    cache = cascade_cache([(prefix_k, prefix_v)], extra)
    layer = cache.layers[0]
    assert isinstance(layer, CascadeLayer)
    return layer, cache, SimpleNamespace(layer_idx=0, num_key_value_groups=HEADS // KV_HEADS)


def _full(layer: CascadeLayer) -> tuple[Any, Any]:
    keys = torch.cat([layer.prefix_keys.expand(BATCH, -1, -1, -1), layer.own_keys()], dim=2)
    values = torch.cat([layer.prefix_values.expand(BATCH, -1, -1, -1), layer.own_values()], dim=2)
    return keys, values


def test_prefill_then_decode_match_attention_over_copied_prefixes() -> None:
    torch.manual_seed(0)
    layer, cache, module = _layer_and_module(extra=2)
    suffix = 5
    # Middle padding: row 1 has two padded suffix slots, row 2 one.
    pad = torch.ones(BATCH, PREFIX + suffix, dtype=torch.bool)
    pad[1, PREFIX : PREFIX + 2] = False
    pad[2, PREFIX] = False
    causal = torch.ones(suffix, PREFIX + suffix, dtype=torch.bool).tril(PREFIX)
    mask = pad[:, None, None, :] & causal[None, None]  # padded queries still see the prefix
    q = torch.randn(BATCH, HEADS, suffix, DIM)
    k, v = layer.update(
        torch.randn(BATCH, KV_HEADS, suffix, DIM), torch.randn(BATCH, KV_HEADS, suffix, DIM)
    )
    with cascade(cache):
        out, _ = cascade_attention_forward(module, q, k, v, mask, scaling=DIM**-0.5)
    assert out.shape == (BATCH, suffix, HEADS, DIM)
    torch.testing.assert_close(
        out.double(), _reference(q, *_full(layer), mask), atol=1e-5, rtol=1e-5
    )

    for step in range(4):  # decode past the preallocated room (extra=2): the buffer grows
        q = torch.randn(BATCH, HEADS, 1, DIM)
        k, v = layer.update(
            torch.randn(BATCH, KV_HEADS, 1, DIM), torch.randn(BATCH, KV_HEADS, 1, DIM)
        )
        pad = torch.cat([pad, torch.ones(BATCH, 1, dtype=torch.bool)], dim=1)
        step_mask = pad[:, None, None, :]
        with cascade(cache):
            out, _ = cascade_attention_forward(module, q, k, v, step_mask, scaling=DIM**-0.5)
        ref = _reference(q, *_full(layer), step_mask)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5, msg=f"step {step}")
    assert layer.get_seq_length() == PREFIX + suffix + 4


def test_no_mask_means_causal_within_the_suffix() -> None:
    torch.manual_seed(1)
    layer, cache, module = _layer_and_module()
    q = torch.randn(BATCH, HEADS, 4, DIM)
    k, v = layer.update(torch.randn(BATCH, KV_HEADS, 4, DIM), torch.randn(BATCH, KV_HEADS, 4, DIM))
    with cascade(cache):
        out, _ = cascade_attention_forward(module, q, k, v, None)
    ref = _reference(q, *_full(layer), None, causal=True)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_outside_a_cascade_block_it_is_plain_sdpa() -> None:
    torch.manual_seed(2)
    _, _, module = _layer_and_module()
    q = torch.randn(BATCH, HEADS, 4, DIM)
    k, v = torch.randn(BATCH, KV_HEADS, 4, DIM), torch.randn(BATCH, KV_HEADS, 4, DIM)
    out, _ = cascade_attention_forward(module, q, k, v, None, scaling=DIM**-0.5, is_causal=True)
    torch.testing.assert_close(
        out.double(), _reference(q, k, v, None, causal=True), atol=1e-5, rtol=1e-5
    )


def test_a_prefix_with_more_than_one_row_is_refused() -> None:
    two_rows = (torch.zeros(2, KV_HEADS, 3, DIM), torch.zeros(2, KV_HEADS, 3, DIM))
    with pytest.raises(ValueError, match="one row"):
        cascade_cache([two_rows], 4)
