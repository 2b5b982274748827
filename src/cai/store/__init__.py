"""Run state on disk: JSONL record files and the SQLite response cache.

Owns: reading and appending strict records as JSONL (with file:line errors and crash-safe
resume), CSV tables with line numbers, prompt sets (bundled and user files), prompt-template
files, YAML documents with line numbers in errors, and the cache of model calls keyed by model,
request and sampling settings.
Must not know: what the records mean, which stage wrote them, or how models are called.
"""

from cai.store._cache import ResponseCache
from cai.store._jsonl import (
    JsonlWriter,
    cut_torn_tail,
    first_error,
    read_jsonl,
    read_jsonl_dicts,
    read_jsonl_numbered,
    write_json,
    write_records,
    write_text_atomic,
)
from cai.store._layout import run_file
from cai.store._prompt_sets import (
    BUILTIN_SETS,
    TEXT_COLUMNS,
    assign_split,
    load_prompts,
    write_prompts,
)
from cai.store._sqlite import applied_migrations, open_sqlite
from cai.store._tables import read_csv_dicts, read_table
from cai.store._templates import load_template
from cai.store._yaml import (
    format_loc,
    line_of,
    load_yaml_model,
    parse_yaml,
    read_text,
    validate_tree,
)

__all__ = [
    "BUILTIN_SETS",
    "TEXT_COLUMNS",
    "JsonlWriter",
    "ResponseCache",
    "applied_migrations",
    "assign_split",
    "cut_torn_tail",
    "first_error",
    "format_loc",
    "line_of",
    "load_prompts",
    "load_template",
    "load_yaml_model",
    "open_sqlite",
    "parse_yaml",
    "read_csv_dicts",
    "read_jsonl",
    "read_jsonl_dicts",
    "read_jsonl_numbered",
    "read_table",
    "read_text",
    "run_file",
    "validate_tree",
    "write_json",
    "write_prompts",
    "write_records",
    "write_text_atomic",
]
