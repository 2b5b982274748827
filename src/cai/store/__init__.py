"""Run state on disk: JSONL record files and the SQLite response cache.

Owns: reading and appending strict records as JSONL (with file:line errors and crash-safe
resume), prompt sets (bundled and user files), prompt-template files, and the cache of model
calls keyed by model, request and sampling settings.
Must not know: what the records mean, which stage wrote them, or how models are called.
"""

from cai.store._cache import ResponseCache
from cai.store._jsonl import JsonlWriter, read_jsonl, read_jsonl_dicts
from cai.store._prompt_sets import (
    BUILTIN_SETS,
    TEXT_COLUMNS,
    assign_split,
    load_prompts,
    write_prompts,
)
from cai.store._templates import load_template

__all__ = [
    "BUILTIN_SETS",
    "TEXT_COLUMNS",
    "JsonlWriter",
    "ResponseCache",
    "assign_split",
    "load_prompts",
    "load_template",
    "read_jsonl",
    "read_jsonl_dicts",
    "write_prompts",
]
