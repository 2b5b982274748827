"""Cascade attention for a batch whose rows share one prompt prefix (transformers backend only).

Owns: a key/value cache layer that holds the shared prefix once (one row), each row's own
prompt tokens and the tokens generated since; the attention function that attends every row's
queries to that single prefix copy and to the row's own keys (one softmax over all of them);
and its registration with transformers as the attention implementation ``cai_cascade``.
Must not know: requests, sampling, prompts or any workflow. Imported only once a transformers
model is loaded (it imports torch at module level).

Why: few-shot critique and revision prompts start with ~1,000 tokens of worked examples that are
the same in every row. With the stock cache each row holds its own copy of them, so every
decoding step reads (and, as the cache grows by concatenation, copies) the prefix once per row.
Here, while decoding, the prefix's scores for all rows and all query heads of a key/value head
come from one matrix product against the one copy, which is what a CPU does well; only the
rows' own tokens are attended per row. The suffixes' prefill (many queries a row) runs the
fused CPU flash-attention kernel twice, all rows' queries against the one prefix copy and each
row against its own tokens, merged by log-sum-exp (materialising the scores costs more than
the kernel). Outside a ``cascade(cache)`` block the function is exactly transformers' SDPA
attention, so scoring and ordinary generation are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["ATTENTION", "CascadeLayer", "cascade", "cascade_cache", "install", "layer_pairs"]

ATTENTION = "cai_cascade"
_ACTIVE: ContextVar[DynamicCache | None] = ContextVar("cai_cascade_cache", default=None)


class CascadeLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's cache in three segments: shared prefix, rows' prompts, generated tokens.

    - ``prefix_keys``/``prefix_values``: the shared prefix, one row ([1, kv, prefix, dim]).
    - ``prompt_keys``/``prompt_values``: every row's own prompt tokens, from the first
      ``update`` (the suffixes' prefill), kept contiguous.
    - ``generated_keys()``/``generated_values()``: tokens added after it, in a buffer with room
      for ``extra`` of them (it grows if that runs out).

    ``update`` returns the segment it wrote to (the attention function checks that by identity
    and then reads all three segments from the layer).

    Matrix products on a slice of a growing buffer make torch copy the slice first, so only the
    generated segment (at most the generation budget) lives in one. ``get_seq_length`` counts
    the prefix too, so
    masks and positions are built for the full sequence exactly as with the stock cache.
    """

    def __init__(
        self,
        prefix_keys: torch.Tensor,
        prefix_values: torch.Tensor,
        extra: int,
        reused: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.prefix_keys = prefix_keys
        self.prefix_values = prefix_values
        self.prefix_length = int(prefix_keys.shape[-2])
        self.extra = max(1, extra)
        # Rows' own tokens already computed by an earlier call ([batch, kv, reused, dim]); the
        # first update (the prefill of the rest) is joined onto them.
        self.reused = reused
        self.prompt_keys: torch.Tensor | None = None
        self.prompt_values: torch.Tensor | None = None
        self._gen_k: torch.Tensor | None = None
        self._gen_v: torch.Tensor | None = None
        self.generated = 0

    @property
    def length(self) -> int:
        """The rows' own tokens held (reused, prompt and generated)."""
        if self.prompt_keys is not None:
            prompt = int(self.prompt_keys.shape[-2])
        else:
            prompt = 0 if self.reused is None else int(self.reused[0].shape[-2])
        return prompt + self.generated

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.prompt_keys is None or self.prompt_values is None:
            if self.reused is not None:
                key_states = torch.cat([self.reused[0], key_states], dim=-2)
                value_states = torch.cat([self.reused[1], value_states], dim=-2)
                self.reused = None
            self.prompt_keys = key_states.contiguous()
            self.prompt_values = value_states.contiguous()
            self.keys, self.values = self.prompt_keys, self.prompt_values
        else:
            self._append(key_states, value_states)
            self.keys, self.values = self._gen_k, self._gen_v
        # The attention function reads the segments from this layer; what it is handed is only
        # checked by identity, so nothing is concatenated here.
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        new = int(key_states.shape[-2])
        have = self.generated
        if self._gen_k is None or self._gen_v is None or have + new > self._gen_k.shape[-2]:
            shape = (*key_states.shape[:-2], have + new + self.extra, key_states.shape[-1])
            k, v = key_states.new_empty(shape), value_states.new_empty(shape)
            if self._gen_k is not None and self._gen_v is not None and have:
                k[..., :have, :] = self._gen_k[..., :have, :]
                v[..., :have, :] = self._gen_v[..., :have, :]
            self._gen_k, self._gen_v = k, v
        self._gen_k[..., have : have + new, :] = key_states
        self._gen_v[..., have : have + new, :] = value_states
        self.generated = have + new

    def generated_keys(self) -> torch.Tensor | None:
        return None if self._gen_k is None else self._gen_k[..., : self.generated, :]

    def generated_values(self) -> torch.Tensor | None:
        return None if self._gen_v is None else self._gen_v[..., : self.generated, :]

    def own_keys(self) -> torch.Tensor:
        """The rows' prompt and generated keys as one tensor (a copy once tokens were added)."""
        assert self.prompt_keys is not None
        gen = self.generated_keys()
        return self.prompt_keys if gen is None else torch.cat([self.prompt_keys, gen], dim=-2)

    def own_values(self) -> torch.Tensor:
        assert self.prompt_values is not None
        gen = self.generated_values()
        return self.prompt_values if gen is None else torch.cat([self.prompt_values, gen], dim=-2)

    def get_seq_length(self) -> int:
        return self.prefix_length + self.length

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.prompt_keys = self.prompt_values = None
        self._gen_k = self._gen_v = None
        self.generated = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a cascade cache cannot be cropped")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a cascade cache is built for its batch size")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (a decoding loop shedding finished rows)."""
        if self.reused is not None:
            self.reused = (self.reused[0][indices], self.reused[1][indices])
        if self.prompt_keys is not None and self.prompt_values is not None:
            self.prompt_keys = self.prompt_keys.index_select(0, indices)
            self.prompt_values = self.prompt_values.index_select(0, indices)
        if self._gen_k is not None and self._gen_v is not None:
            self._gen_k = self._gen_k.index_select(0, indices)
            self._gen_v = self._gen_v.index_select(0, indices)


def cascade_cache(
    prefix: Sequence[tuple[torch.Tensor, torch.Tensor]],
    extra: int,
    reused: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> DynamicCache:
    """A fresh cache for a batch, sharing ``prefix`` (one row a layer) without copying it.

    ``reused``: the rows' own key/values an earlier call computed, per layer, if any.
    """
    layers: list[Any] = []
    for i, (keys, values) in enumerate(prefix):
        if keys.shape[0] != 1 or values.shape[0] != 1:
            raise ValueError("the shared prefix must be one row in every layer")
        layers.append(CascadeLayer(keys, values, extra, None if reused is None else reused[i]))
    cache = DynamicCache()
    cache.layers = layers
    return cache


def layer_pairs(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A stock cache's (keys, values) per layer."""
    pairs = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None:
            raise ValueError("a cache layer holds no keys")
        pairs.append((keys, values))
    return pairs


@contextlib.contextmanager
def cascade(cache: DynamicCache) -> Iterator[None]:
    """Within the block, attention on the model's layers reads the prefix from ``cache``."""
    token = _ACTIVE.set(cache)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _layer_of(module: Any, key: torch.Tensor) -> CascadeLayer | None:
    """The cascade layer whose ``update`` just returned ``key``, if attention is in a block."""
    cache = _ACTIVE.get()
    idx = getattr(module, "layer_idx", None)
    if cache is None or idx is None or idx >= len(cache.layers):
        return None
    layer = cache.layers[idx]
    return layer if isinstance(layer, CascadeLayer) and layer.keys is key else None


def cascade_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over [shared prefix | row prompt | generated] with one copy of the prefix.

    ``query``: [batch, heads, q, dim]; ``key``/``value``: what the layer's ``update`` returned;
    ``attention_mask``: boolean or additive [batch, 1, q, total], or None (then causal within
    the rows' own tokens, the prefix fully visible). Returns [batch, q, heads, dim]. One query a
    row (decoding) takes the one-copy path; several (the suffixes' prefill) take ``_prefill``.
    """
    layer = _layer_of(module, key)
    if layer is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, q_len, dim = query.shape
    if q_len > 1:
        return _prefill(module, query, attention_mask, layer, scaling, **kwargs)
    pk, pv = layer.prefix_keys[0], layer.prefix_values[0]  # [kv, prefix, dim]
    kv_heads = pk.shape[0]
    group = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    # Head h reads key/value head h // group: fold each group's queries into one row block.
    q = (query * scale).reshape(batch, kv_heads, group, dim)
    q_by_head = q.transpose(0, 1).reshape(kv_heads, batch * group, dim)
    own = [(layer.prompt_keys, layer.prompt_values)]
    if layer.generated:
        own.append((layer.generated_keys(), layer.generated_values()))
    # Scores: the prefix for all rows in one product per key/value head, then each row's own.
    s_prefix = torch.matmul(q_by_head, pk.transpose(-1, -2)).view(kv_heads, batch, group, -1)
    s_own = [torch.matmul(q, k.transpose(-1, -2)) for k, _ in own if k is not None]
    width = sum(int(part.shape[-1]) for part in s_own)
    if attention_mask is not None:
        # Padding is only ever in the rows' own columns: the shared prefix is real in every row.
        mask = attention_mask[:, :, -1:, -width:].unsqueeze(2)  # [batch, 1, 1, 1, own]
        start = 0
        for part in s_own:
            cols = mask[..., start : start + part.shape[-1]].squeeze(2)
            start += part.shape[-1]
            if cols.dtype == torch.bool:
                part.masked_fill_(~cols, float("-inf"))
            else:
                part.add_(cols.to(part.dtype))
    scores = torch.cat([s_prefix.transpose(0, 1), *s_own], dim=-1)  # [batch, kv, group, total]
    if scores.dtype == torch.float16:  # bfloat16 and float32 softmax accumulate in float32
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    else:
        probs = torch.softmax(scores, dim=-1)
    widths = [int(s_prefix.shape[-1])] + [int(part.shape[-1]) for part in s_own]
    chunks = torch.split(probs, widths, dim=-1)
    p_prefix = chunks[0].transpose(0, 1).reshape(kv_heads, batch * group, widths[0])
    out = torch.matmul(p_prefix, pv).view(kv_heads, batch, group, dim).transpose(0, 1)
    for chunk, (_, v) in zip(chunks[1:], own, strict=True):
        assert v is not None
        out = out + torch.matmul(chunk, v)
    out = out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous()
    return out, None


def _prefill(
    module: Any,
    query: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layer: CascadeLayer,
    scaling: float | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Several queries a row (the suffixes' prefill), in two fused-kernel passes on CPU.

    Every row's queries attend to the one prefix copy in a single unmasked flash-attention call
    (all rows' queries stacked as one long sequence), and to the row's own tokens in a second,
    masked call; the two are merged by their log-sum-exps. Materialising the scores instead
    costs more than either. Elsewhere (or without the CPU kernel) the prefix is copied to every
    row and SDPA runs over ``[prefix | own tokens]``.
    """
    batch, heads, q_len, dim = query.shape
    own_k, own_v = layer.own_keys(), layer.own_values()
    total = layer.prefix_length + int(own_k.shape[-2])
    if attention_mask is None:  # causal within the own tokens; the last q_len are the queries
        attention_mask = torch.ones(q_len, total, dtype=torch.bool, device=query.device)
        attention_mask = attention_mask.tril(total - q_len)[None, None].expand(batch, 1, -1, -1)
    flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if query.device.type != "cpu" or flash is None or attention_mask.dtype != torch.bool:
        full_k = torch.cat([layer.prefix_keys.expand(batch, -1, -1, -1), own_k], dim=-2)
        full_v = torch.cat([layer.prefix_values.expand(batch, -1, -1, -1), own_v], dim=-2)
        kwargs.pop("is_causal", None)
        return sdpa_attention_forward(
            module,
            query,
            full_k,
            full_v,
            attention_mask,
            scaling=scaling,
            is_causal=False,
            **kwargs,
        )
    scale = dim**-0.5 if scaling is None else scaling
    group = heads // layer.prefix_keys.shape[1]
    # Prefix: one sequence of batch * q_len queries per head against the single prefix copy.
    stacked = query.transpose(0, 1).reshape(1, heads, batch * q_len, dim)
    pk = layer.prefix_keys.repeat_interleave(group, dim=1)
    pv = layer.prefix_values.repeat_interleave(group, dim=1)
    out_p, lse_p = flash(stacked, pk, pv, scale=scale)
    out_p = out_p.view(heads, batch, q_len, dim).transpose(0, 1)
    lse_p = lse_p.view(heads, batch, q_len).transpose(0, 1)
    # Own tokens: per row, with the padding and causal mask (additive, as the kernel wants).
    own_mask = attention_mask[..., -int(own_k.shape[-2]) :]
    additive = torch.zeros(own_mask.shape, dtype=query.dtype, device=query.device)
    additive.masked_fill_(~own_mask, float("-inf"))
    out_o, lse_o = flash(
        query,
        own_k.repeat_interleave(group, dim=1),
        own_v.repeat_interleave(group, dim=1),
        attn_mask=additive,
        scale=scale,
    )
    # A padded query may see none of its own row (the kernel then reports 0 for both output
    # and log-sum-exp): its own share is zero.
    lse_o = lse_o.masked_fill(~own_mask.any(dim=-1), float("-inf"))
    lse = torch.logaddexp(lse_p, lse_o)
    out = out_p.float() * torch.exp(lse_p - lse).unsqueeze(-1)
    out += out_o.float() * torch.exp(lse_o - lse).unsqueeze(-1)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def install(model: Any) -> bool:
    """Register ``cai_cascade`` and switch ``model`` to it; False if the model cannot use it.

    Only models whose attention goes through transformers' attention interface with SDPA
    semantics (causal decoders, no soft-capping, no sliding window) are switched.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attn_logit_softcapping", None):
        return False
    AttentionInterface.register(ATTENTION, cascade_attention_forward)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, AttributeError, ImportError):
        return False
    return True
