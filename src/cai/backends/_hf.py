"""The transformers backend: ``embedded``, ``hf:PATH_OR_ID[@revision][+ADAPTER]`` and ``run:DIR``.

Owns: resolving those specs to a model dir (plus an optional PEFT adapter, steering vectors
hooked in for a ``+steer:`` suffix, see ``_steer``, and the control token of a model trained
with them, ``_control``), loading the model on one device, batched
chat generation (sorted by length, left-padded, stop strings, seeds) and batched
log-probability scoring of candidate continuations.
Must not know: constitutions, prompt templates, caches or any workflow. torch, transformers and
peft are imported only when a model is loaded, never when this module is imported.

Batching: requests are sorted longest first (an out-of-memory batch shows up at once, not after an
hour) and cut into batches of at most ``batch_size`` requests and ``max_batch_tokens`` padded
tokens (prompt plus new tokens). A batch that runs out of memory is split in half and retried;
any other runtime failure turns that batch's requests into ``finish_reason='error'`` results.

Shared prefixes: when every row of a batch starts with the same tokens (the few-shot examples in
front of every critique and revision request), the prefix's key/values are computed once, in a
single-row forward pass; each row's own suffix is then left-padded behind the prefix ("middle
padding") so the prefix sits at the same positions in every row. The prefix cache is reused by
later batches of the same call. Where the model runs transformers' SDPA attention, the batch
keeps that one copy and decodes with cascade attention (``_cascade``: one matrix product over
the prefix for all rows), and the token budget counts a prefix common to the whole call once;
otherwise the prefix is copied to every row. Greedy outputs can differ from the unshared path in
the last bits of bfloat16 arithmetic; ``prefix_cache=False`` turns all of it off.

Decoding runs in our own loop (``_decode``), not ``model.generate``: a row that ended (end
token or stop string) leaves the batch and its cache once that pays, and its key/values go to
the store as it leaves. ``raw_generate`` keeps ``model.generate`` as the benchmark's yardstick.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cai.backends._common import BUGS, CHATML_TEMPLATE, cpu_has_fast_bf16
from cai.backends._embedded import EMBEDDED_NAME, embedded_model_dir
from cai.backends._layout import Layout, pad_rows, reuse_plan
from cai.errors import BackendError, InputError, missing
from cai.records import Generation, GenerationRequest, Message, SamplingParams, ScoreRequest

__all__ = ["GenerationStats", "HFBackend", "ModelSource", "embedded_model_dir", "resolve_spec"]

_FALLBACK_TEMPLATE = CHATML_TEMPLATE
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
_BUGS = BUGS
K = TypeVar("K")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ModelSource:
    """Where a spec's weights come from."""

    model: str
    """Local model dir or hub id of the (base) model."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``model``."""
    adapter: Path | None = None
    """PEFT adapter dir loaded on top of ``model`` (merged for speed)."""
    tokenizer: str | None = None
    """Where the tokenizer is read from (default: ``model``)."""


@dataclass
class GenerationStats:
    """Progress of the current (or last) ``generate`` call; updated after every batch."""

    requests: int = 0
    """Requests in the call."""
    done: int = 0
    """Requests finished so far."""
    batches: int = 0
    """Batches run so far."""
    prompt_tokens: int = 0
    """Prompt tokens of the finished requests."""
    completion_tokens: int = 0
    """Tokens generated so far."""
    seconds: float = 0.0
    """Wall time so far."""

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


def resolve_spec(spec: str, cache_dir: str | Path | None = None) -> ModelSource:
    """Turn ``embedded``, ``hf:...`` or ``run:DIR`` into a ModelSource; InputError if unusable.

    ``embedded`` is converted to its cache dir on first use (see ``embedded_model_dir``); a
    ``+cond:`` suffix (``_control``) changes no weights and is ignored here.
    """
    from cai.backends._control import split_cond

    prefix, _, arg = split_cond(spec)[0].partition(":")
    if prefix == "embedded":
        if arg:
            raise InputError(f"model spec {spec!r}: 'embedded' takes no argument")
        return ModelSource(str(embedded_model_dir(cache_dir)))
    if prefix == "run":
        if not arg:
            raise InputError(f"model spec {spec!r}: expected run:DIR")
        return _local_source(Path(arg).expanduser(), spec, cache_dir)
    if prefix != "hf" or not arg:
        raise InputError(f"model spec {spec!r}: expected embedded, hf:PATH_OR_ID or run:DIR")
    if Path(arg).expanduser().exists():
        return _local_source(Path(arg).expanduser(), spec, cache_dir)
    base, plus, adapter = arg.partition("+")
    if plus:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise InputError(f"{adapter}: not a PEFT adapter dir (no adapter_config.json)")
        src = _base_source(base, spec, cache_dir)
        tok = str(adapter_dir) if _has_tokenizer(adapter_dir) else src.tokenizer
        return ModelSource(src.model, src.revision, adapter_dir, tok)
    return _base_source(base, spec, cache_dir)


def _base_source(name: str, spec: str, cache_dir: str | Path | None) -> ModelSource:
    """A base model named by ``embedded``, a local dir, or a hub id with optional @revision."""
    if name == "embedded":
        return ModelSource(str(embedded_model_dir(cache_dir)))
    path = Path(name).expanduser()
    if path.exists():
        return _local_source(path, spec, cache_dir)
    if path.name == EMBEDDED_NAME:
        # An adapter trained on the embedded model, whose converted copy has since been removed
        # or lives on another machine: any copy is the same model, so use (or make) ours.
        return ModelSource(str(embedded_model_dir(cache_dir)))
    if name.startswith(("/", ".", "~")) or "\\" in name:
        raise InputError(f"{name}: no such model directory (model spec {spec!r})")
    model_id, at, revision = name.rpartition("@")
    if at and "/" not in revision:
        return ModelSource(model_id, revision or None)
    return ModelSource(name)


def _local_source(path: Path, spec: str, cache_dir: str | Path | None) -> ModelSource:
    """A local full-model dir, or a PEFT adapter dir whose config names its base model."""
    if not path.is_dir():
        raise InputError(f"{path}: no such model directory (model spec {spec!r})")
    adapter_config = path / "adapter_config.json"
    if adapter_config.is_file():
        try:
            base = json.loads(adapter_config.read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{adapter_config}: no base_model_name_or_path") from None
        src = _base_source(str(base), spec, cache_dir)
        tok = str(path) if _has_tokenizer(path) else src.tokenizer
        return ModelSource(src.model, src.revision, path, tok)
    if (path / "reward_probe.json").is_file():
        raise InputError(f"{path}: a reward probe, not a chat model: load it as probe:{path}")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a model directory (no config.json or adapter_config.json)")
    return ModelSource(str(path))


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise missing("torch", "hf") from None
    return torch


class HFBackend:
    """A transformers causal LM on one device, batch-first.

    ``cache_dir`` is the cai cache root for the embedded model's converted copy (default
    ``$CAI_CACHE_DIR`` or ``~/.cache/cai``). ``dtype='auto'`` is bfloat16 where the CPU has
    AVX-512 kernels for it (there it generates about twice as fast as float32 in batches) and
    float32 on CPUs without them (AVX2 only: bfloat16 is ~100x slower there). ``on_progress``,
    when set, is called with ``last_stats`` after every batch. ``prefix_cache`` turns on
    shared-prefix reuse within a batch and, up to ``kv_store_bytes`` of key/values, reuse across
    calls of rows an earlier request computed (a revision chat that continues its critique chat
    skips the critique chat's prefill); ``min_prefix_tokens`` is the shortest prefix worth
    either.
    """

    def __init__(
        self,
        spec: str,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        max_batch_tokens: int = 32768,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 64,
        kv_store_bytes: int = 512 << 20,
    ) -> None:
        if batch_size < 1 or max_batch_tokens < 1:
            raise InputError("batch_size and max_batch_tokens must be at least 1")
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = max(1, min_prefix_tokens)
        self._prefix_kv: dict[tuple[int, ...], Any] = {}
        from cai.backends._control import control_prefix, read_control, split_cond
        from cai.backends._steer import load_steering

        cond_spec, cond = split_cond(spec)
        base_spec, self.steering = load_steering(cond_spec)
        self.source = resolve_spec(base_spec, cache_dir)
        own = self.source.adapter or Path(self.source.model)
        # Conditional training's control token (``_control``): starts every assistant turn.
        self.control = control_prefix(spec, cond, read_control(own) if own.is_dir() else None)
        self.spec = cond_spec
        self.last_stats = GenerationStats()
        self.on_progress: Callable[[GenerationStats], None] | None = None
        torch = _torch()
        self._torch = torch
        self.dtype = _resolve_dtype(torch, dtype, device)
        self.model, self.tokenizer = self._load()
        if self.steering is not None:  # hooks on the residual stream; see _steer
            self.steering.install(self.model)
            self.spec = f"{base_spec}+steer:{self.steering.arg()}"
        if cond is not None or self.control:
            self.spec += f"+cond:{self.control or 'none'}"
        self._cascade = prefix_cache and self._install_cascade()
        self._store: Any = None
        if prefix_cache and kv_store_bytes > 0:
            from cai.backends._kvstore import KVStore

            self._store = KVStore(kv_store_bytes)
        self._pad_id, self._eos_ids = self._special_ids()
        # Finished rows of a batch are filled with pad, so pad also marks the end of a row.
        self._end_ids = self._eos_ids | {self._pad_id}

    # -- loading ----------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = self.source
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(
                src.model, revision=src.revision, dtype=self.dtype
            )
            tokenizer = AutoTokenizer.from_pretrained(
                src.tokenizer or src.model, revision=None if src.tokenizer else src.revision
            )
            if src.adapter is not None:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise missing("peft", "train") from None
                model = PeftModel.from_pretrained(model, str(src.adapter)).merge_and_unload()
        except (OSError, ValueError) as exc:  # missing files, hub unreachable, bad config
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"model spec {self.spec!r}: cannot load {src.model}: {first}"
            ) from None
        model.to(self.device).eval()
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = _FALLBACK_TEMPLATE
        return model, tokenizer

    def _install_cascade(self) -> bool:
        """Switch the model to cascade attention (one prefix copy a batch), where it can run."""
        from cai.backends import _cascade

        return _cascade.install(self.model)

    def _special_ids(self) -> tuple[int, frozenset[int]]:
        ends: set[int] = set()
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        for value in configured if isinstance(configured, list) else [configured]:
            if value is not None:
                ends.add(int(value))
        if self.tokenizer.eos_token_id is not None:
            ends.add(int(self.tokenizer.eos_token_id))
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
            self.tokenizer.pad_token_id = pad
        return int(pad), frozenset(ends)

    # -- prompts ----------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], prefill: str = "") -> str:
        """The prompt text the model continues: chat template, generation prompt, prefill."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return str(text) + self.control + prefill

    def _ids(self, text: str) -> list[int]:
        # The chat template already holds any BOS/special tokens the model expects.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _pad(
        self, rows: Sequence[list[int]], shared: int = 0, reuse: Sequence[int] | None = None
    ) -> tuple[Any, Any, int, int]:
        ids, mask, width_reused, width_new = pad_rows(
            self._torch, rows, self._pad_id, shared, reuse
        )
        return ids.to(self.device), mask.to(self.device), width_reused, width_new

    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[Any, Any]:
        return self._pad(rows)[:2]

    def _batches(
        self, items: list[tuple[K, list[int]]], extra: int, shared: int = 0
    ) -> Iterator[list[tuple[K, list[int]]]]:
        """Longest first; at most batch_size rows and max_batch_tokens padded tokens a batch.

        ``extra`` is the number of tokens each row grows by (max_new_tokens when generating);
        ``shared`` leading tokens common to every row are held once, so they are not counted.
        """
        ordered = sorted(items, key=lambda it: len(it[1]), reverse=True)
        batch: list[tuple[K, list[int]]] = []
        for item in ordered:
            if batch:
                width = len(batch[0][1]) - shared  # the longest row: rows come longest first
                over = (len(batch) + 1) * (width + extra) > self.max_batch_tokens
                if len(batch) >= self.batch_size or over:
                    yield batch
                    batch = []
            batch.append(item)
        if batch:
            yield batch

    # -- generation -------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        """Continue each chat; results in request order. A failed batch gives error results."""
        start = time.perf_counter()
        stats = GenerationStats(requests=len(requests))
        self.last_stats = stats
        results: list[Generation | None] = [None] * len(requests)
        prompts: list[tuple[int, list[int]]] = []
        for i, request in enumerate(requests):
            try:
                prompts.append((i, self._ids(self.render(request.messages, request.prefill))))
            except _BUGS:
                raise
            except Exception as exc:  # a template that rejects this conversation
                results[i] = _error(f"cannot render the chat: {exc}")
        self._prefix_kv.clear()  # prefix key/values live for one call
        # With cascade attention a prefix common to all rows is held once, whatever the batch.
        common = self._shared_prefix_length([ids for _, ids in prompts]) if self._cascade else 0
        for batch in self._batches(prompts, params.max_new_tokens, common):
            run = functools.partial(self._generate, params=params)
            try:
                outs = _split_on_oom(self._torch, batch, run)
            except _BUGS:
                raise
            except Exception as exc:
                outs = [_error(f"{type(exc).__name__}: {exc}")] * len(batch)
            for (i, ids), gen in zip(batch, outs, strict=True):
                results[i] = gen
                stats.prompt_tokens += len(ids)
                stats.completion_tokens += gen.completion_tokens
            stats.done += len(batch)
            stats.batches += 1
            stats.seconds = time.perf_counter() - start
            if self.on_progress is not None:
                self.on_progress(stats)
        self._prefix_kv.clear()
        stats.done = len(requests)
        stats.seconds = time.perf_counter() - start
        return [g if g is not None else _error("not generated") for g in results]

    def _generate(
        self, batch: list[tuple[int, list[int]]], params: SamplingParams
    ) -> list[Generation]:
        torch = self._torch
        rows = [row for _, row in batch]
        # Every row draws from its own generator, seeded by the call's seed and the row's prompt
        # tokens: the same request samples the same text whatever batch, shard or
        # out-of-memory split it lands in, so local, resumed and Ray runs agree.
        seeds = [row_seed(params.seed, row) for row in rows] if params.temperature > 0 else []
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            layout = self._layout(rows, params.max_new_tokens)
            if layout.cascade:
                from cai.backends._cascade import cascade

                stack.enter_context(cascade(layout.cache))
            new_rows = self._decode(rows, layout, params, seeds)
        pairs = zip(batch, new_rows, strict=True)
        return [self._finish(len(prompt), row, params) for (_, prompt), row in pairs]

    def _decode(
        self, rows: list[list[int]], layout: Layout, params: SamplingParams, seeds: list[int]
    ) -> list[list[int]]:
        """Our decoding loop: finished rows leave the batch (their key/values go to the store).

        A row finishes at an end token or once its text holds a stop string; ``_finish`` cuts
        the text at the stop string.
        """
        from cai.backends._decode import Decoding, decode

        torch = self._torch
        cache = layout.cache
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        how = Decoding(
            max_new_tokens=params.max_new_tokens,
            end_ids=self._eos_ids,
            pad_id=self._pad_id,
            repetition_penalty=params.repetition_penalty,
            temperature=params.temperature,
            top_p=params.top_p,
            generators=[torch.Generator(device=self.device).manual_seed(s) for s in seeds],
            stopped=self._stop_check(params.stop),
        )

        def done(row: int, position: int, new: list[int], fed: int) -> None:
            self._remember(rows[row], new, fed, layout, cache, row, position)

        return decode(torch, self.model, layout.ids, layout.mask, cache, how, done)

    def _stop_check(self, stops: Sequence[str]) -> Callable[[list[int]], bool] | None:
        """Whether a row's new tokens spell one of ``stops`` (None when there are none)."""
        wanted = [s for s in stops if s]
        if not wanted:
            return None
        decode = self.tokenizer.decode

        def stopped(tokens: list[int]) -> bool:  # the whole text: ~30 us for 256 tokens
            text = decode(tokens, skip_special_tokens=True)
            return any(s in text for s in wanted)

        return stopped

    # -- prefix reuse -----------------------------------------------------------------------

    def _layout(self, rows: list[list[int]], new_tokens: int) -> Layout:
        """Input ids, mask and starting cache for a batch, reusing whatever is already computed.

        One row: the longest prefix an earlier row left in the store. Several rows sharing a
        prefix: that prefix once (from the store, else one forward pass a call), and with
        cascade attention also each row's own tokens the store holds behind it.
        """
        shared = self._shared_prefix_length(rows)
        store = self._store
        if len(rows) == 1:
            ids, mask = self._left_pad(rows)
            entry, reused = store.match(rows[0], len(rows[0]) - 1) if store else (None, 0)
            if entry is None or reused < self.min_prefix_tokens:
                return Layout(ids, mask)
            from transformers import DynamicCache

            cache = DynamicCache()
            for i, (k, v) in enumerate(entry.kv(0, reused)):
                cache.update(k, v, i)
            self._count_reuse(reused)
            return Layout(ids, mask, cache=cache)
        if not shared:
            return Layout(*self._left_pad(rows))
        if not self._cascade:
            ids, mask, _, _ = self._pad(rows, shared)
            return Layout(ids, mask, cache=self._expanded_prefix(rows[0][:shared], len(rows)))
        from cai.backends._cascade import cascade_cache

        matches = [store.match(row, len(row) - 1) if store else (None, 0) for row in rows]
        prefix = self._shared_kv(rows[0][:shared], matches)
        lengths = [len(row) - shared for row in rows]
        reuse = reuse_plan(
            [max(0, n - shared) if e is not None else 0 for e, n in matches], lengths
        )
        if max(reuse) < self.min_prefix_tokens:
            reuse = [0] * len(rows)
        ids, mask, width_reused, width_new = self._pad(rows, shared, reuse)
        reused_kv = None
        if width_reused:
            reused_kv = self._gather_reused(matches, shared, reuse, width_reused, prefix)
            self._count_reuse(sum(reuse))
        cache = cascade_cache(prefix, width_new + new_tokens, reused_kv)
        return Layout(ids, mask, cache, True, shared, prefix, reuse, width_reused, width_new)

    def _count_reuse(self, tokens: int) -> None:
        if self._store is not None:
            self._store.hits += 1
            self._store.reused_tokens += tokens

    def _shared_kv(
        self, prefix: list[int], matches: Sequence[tuple[Any, int]]
    ) -> list[tuple[Any, Any]]:
        """The shared prefix's key/values (one row a layer): from the store, else computed."""
        for entry, reused in matches:
            if entry is not None and reused >= len(prefix):
                self._count_reuse(len(prefix))
                return [(k.contiguous(), v.contiguous()) for k, v in entry.kv(0, len(prefix))]
        from cai.backends._cascade import layer_pairs

        return layer_pairs(self._computed_prefix(prefix))

    def _gather_reused(
        self,
        matches: Sequence[tuple[Any, int]],
        shared: int,
        reuse: Sequence[int],
        width: int,
        prefix: list[tuple[Any, Any]],
    ) -> list[tuple[Any, Any]]:
        """Each row's stored own tokens, right-aligned in ``width`` columns, per layer."""
        out: list[tuple[Any, Any]] = []
        batch = len(reuse)
        per_row = [
            e.kv(shared, shared + u) if e is not None and u else None
            for (e, _), u in zip(matches, reuse, strict=True)
        ]
        for layer, (pk, _) in enumerate(prefix):
            shape = (batch, pk.shape[1], width, pk.shape[3])
            keys, values = pk.new_zeros(shape), pk.new_zeros(shape)
            for i, kv in enumerate(per_row):
                if kv is not None:
                    keys[i, :, width - reuse[i] :] = kv[layer][0][0]
                    values[i, :, width - reuse[i] :] = kv[layer][1][0]
            out.append((keys, values))
        return out

    def _remember(
        self,
        row: list[int],
        new: list[int],
        fed: int,
        layout: Layout,
        past: Any,
        index: int,
        position: int,
    ) -> None:
        """Keep a row's key/values (prompt and generated tokens) for later requests.

        ``index``: the row's place in ``layout``; ``position``: its place in ``past`` now (a
        batch that shed finished rows is smaller); ``fed``: new tokens ``past`` holds.
        """
        store = self._store
        if store is None or past is None or not (layout.cascade or len(layout.ids) == 1):
            return
        kept = next((j for j, t in enumerate(new) if t in self._end_ids), len(new))
        kept = min(kept, fed)
        tokens = row + new[:kept]
        if not layout.cascade:
            from cai.backends._cascade import layer_pairs

            own = [
                (
                    k[position : position + 1, :, : len(tokens)],
                    v[position : position + 1, :, : len(tokens)],
                )
                for k, v in layer_pairs(past)
            ]
            store.add(tokens, [], own, 0)
            return
        torch = self._torch
        cols = layout.own_columns(index, len(row))
        columns = torch.tensor(cols, dtype=torch.long, device=self.device)
        own = []
        at = slice(position, position + 1)
        for layer in past.layers:
            k = layer.prompt_keys[at].index_select(2, columns)
            v = layer.prompt_values[at].index_select(2, columns)
            if kept:
                k = torch.cat([k, layer.generated_keys()[at, :, :kept]], dim=2)
                v = torch.cat([v, layer.generated_values()[at, :, :kept]], dim=2)
            own.append((k, v))
        store.add(tokens, layout.prefix, own, layout.shared)

    def _shared_prefix_length(self, rows: Sequence[list[int]]) -> int:
        """Tokens every row starts with (each row keeps at least one of its own), or 0.

        0 when prefix reuse is off, the batch has one row, or the prefix is shorter than
        ``min_prefix_tokens`` (a short prefix does not pay for its copy).
        """
        if not self.prefix_cache or len(rows) < 2:
            return 0
        limit = min(len(r) for r in rows) - 1
        first = rows[0]
        n = 0
        while n < limit and all(r[n] == first[n] for r in rows):
            n += 1
        return n if n >= self.min_prefix_tokens else 0

    def _computed_prefix(self, prefix: list[int]) -> Any:
        """The prefix's key/values from a one-row forward pass, computed once a call."""
        key = tuple(prefix)
        cache = self._prefix_kv.get(key)
        if cache is None:
            ids = self._torch.tensor([prefix], dtype=self._torch.long, device=self.device)
            cache = self.model(input_ids=ids, use_cache=True).past_key_values
            self._prefix_kv[key] = cache
        return cache

    def _expanded_prefix(self, prefix: list[int], rows: int) -> Any:
        """A fresh cache holding the prefix once per row (models without cascade attention)."""
        expanded = copy.deepcopy(self._computed_prefix(prefix))
        expanded.batch_repeat_interleave(rows)
        return expanded

    def _finish(self, prompt_tokens: int, row: list[int], params: SamplingParams) -> Generation:
        end = next((k for k, tok in enumerate(row) if tok in self._end_ids), None)
        tokens = row if end is None else row[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in params.stop if s and s in text]
        if cuts:
            text = text[: min(cuts)]
        finished = end is not None or bool(cuts)
        return Generation(
            text=text,
            finish_reason="stop" if finished else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),  # tokens before the end-of-turn token
        )

    def raw_generate(self, texts: Sequence[str], max_new_tokens: int, batch_size: int) -> int:
        """Greedy ``model.generate`` on raw prompt texts, in the given order, fixed batches.

        A baseline for benchmarks: no sorting, no token budget, no stop strings. Returns the
        number of generated tokens (up to each row's end-of-turn token).
        """
        torch = self._torch
        total = 0
        for lo in range(0, len(texts), batch_size):
            ids, mask = self._left_pad([self._ids(t) for t in texts[lo : lo + batch_size]])
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self._pad_id,
                )
            for row in out[:, ids.shape[1] :].tolist():
                end = next((k for k, tok in enumerate(row) if tok in self._end_ids), len(row))
                total += end
        return total

    # -- scoring ----------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Summed log-probability of each candidate after the rendered chat and prefill.

        Tokenisation at the boundary: the prompt plus candidate is tokenised as one string, and
        when the prompt's own tokens are a prefix of the result the rest are the candidate's
        tokens (the tokens the model would itself have produced). When a merge crosses the
        boundary (prefill 'is' + candidate 'n't'), the candidate is tokenised on its own and
        appended instead, so every candidate is scored after exactly the same prompt tokens.
        An empty candidate scores 0.0.
        """
        out = [[0.0] * len(r.candidates) for r in requests]
        items: list[tuple[tuple[int, int, int], list[int]]] = []  # ((req, cand, n_cand), ids)
        for ri, request in enumerate(requests):
            prompt = self.render(request.messages, request.prefill)
            prompt_ids = self._ids(prompt)
            if not prompt_ids:
                raise InputError("score: the rendered prompt is empty")
            for ci, candidate in enumerate(request.candidates):
                cand_ids = self._candidate_ids(prompt, prompt_ids, candidate)
                if cand_ids:
                    items.append(((ri, ci, len(cand_ids)), prompt_ids + cand_ids))
        for batch in self._batches(items, 0):
            try:
                sums = _split_on_oom(self._torch, batch, self._score_batch)
            except _BUGS:
                raise
            except Exception as exc:
                raise BackendError(f"{self.spec}: scoring failed: {exc}") from exc
            for ((ri, ci, _), _row), value in zip(batch, sums, strict=True):
                out[ri][ci] = value
        return out

    def _candidate_ids(self, prompt: str, prompt_ids: list[int], candidate: str) -> list[int]:
        if not candidate:
            return []
        full = self._ids(prompt + candidate)
        if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
            return full[len(prompt_ids) :]
        return self._ids(candidate)

    def _score_batch(self, batch: list[tuple[tuple[int, int, int], list[int]]]) -> list[float]:
        torch = self._torch
        ids, mask = self._left_pad([row for _, row in batch])  # [B, L], candidates end every row
        n_cand = torch.tensor([key[2] for key, _ in batch], device=ids.device)  # [B]
        keep = int(n_cand.max()) + 1  # logits at L-keep .. L-1 predict the candidate tokens
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
        with torch.inference_mode():
            try:
                logits = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=keep,
                    use_cache=False,  # one pass: a key/value cache would only take memory
                ).logits
            except TypeError:  # a model without logits_to_keep
                logits = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
                ).logits
            logits = logits[:, -keep:].float()  # [B, keep, V]
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # [B, keep-1, V]
            targets = ids[:, -(keep - 1) :]  # [B, keep-1]: the tokens those logits predict
            token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, keep-1]
            col = torch.arange(keep - 1, device=ids.device)
            in_candidate = col.unsqueeze(0) >= (keep - 1 - n_cand).unsqueeze(1)  # [B, keep-1]
            sums = (token_lp * in_candidate).sum(-1)  # [B]
        return [float(v) for v in sums.tolist()]

    # -- lifecycle --------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop every stored row's key/values (benchmarks start each contender cold)."""
        if self._store is not None:
            self._store.clear()

    def close(self) -> None:
        """Drop the model and free its memory."""
        self.model = None
        self._prefix_kv.clear()
        if self._store is not None:
            self._store.clear()
        gc.collect()
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


def _resolve_dtype(torch: Any, dtype: str, device: str) -> Any:
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "cpu" and not cpu_has_fast_bf16(torch):
            return torch.float32
        return torch.bfloat16
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}")
    return getattr(torch, _DTYPES[dtype])


def row_seed(seed: int, prompt_ids: Sequence[int]) -> int:
    """The sampling seed of one request: its call's seed and its prompt tokens, nothing else."""
    digest = hashlib.blake2b(f"{seed}:{','.join(map(str, prompt_ids))}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 2**63


def _split_on_oom(torch: Any, batch: list[T], run: Callable[[list[T]], list[R]]) -> list[R]:
    """Run a batch; on out-of-memory run its two halves instead (down to single rows)."""
    try:
        return run(batch)
    except (torch.OutOfMemoryError, MemoryError):
        if len(batch) == 1:
            raise
        gc.collect()
        half = len(batch) // 2
        return _split_on_oom(torch, batch[:half], run) + _split_on_oom(torch, batch[half:], run)


def _error(message: str) -> Generation:
    return Generation(text="", finish_reason="error", error=message)
