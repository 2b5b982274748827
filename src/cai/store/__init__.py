"""Run state on disk: JSONL record files and the SQLite response cache.

Owns: reading and appending strict records as JSONL (with file:line errors and crash-safe
resume), and the cache of model calls keyed by model, request and sampling settings.
Must not know: what the records mean, which stage wrote them, or how models are called.
"""

from cai.store._cache import ResponseCache
from cai.store._jsonl import JsonlWriter, read_jsonl, read_jsonl_dicts

__all__ = ["JsonlWriter", "ResponseCache", "read_jsonl", "read_jsonl_dicts"]
