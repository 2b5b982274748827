"""Model backends: one batch-first interface over mock, transformers, OpenAI-style servers.

Owns: the ``Backend`` protocol, model-spec parsing and the registry, the response-cache wrapper,
and the built-in backends (each lazily imported; only ``hf``/``embedded`` touch torch).
Must not know: constitutions, prompt templates, or any workflow.
"""

from cai.backends._cached import CachedBackend
from cai.backends._mock import MockBackend, MockRule
from cai.backends._protocol import Backend
from cai.backends._registry import backend_names, load_backend, parse_spec, register_backend

__all__ = [
    "Backend",
    "CachedBackend",
    "MockBackend",
    "MockRule",
    "backend_names",
    "load_backend",
    "parse_spec",
    "register_backend",
]
