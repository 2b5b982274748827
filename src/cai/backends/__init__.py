"""Model backends: one batch-first interface over mock, transformers, OpenAI-style servers.

Owns: the ``Backend`` protocol, model-spec parsing and the registry, the response-cache wrapper,
and the built-in backends (each lazily imported; only ``hf``/``embedded`` touch torch).
Must not know: constitutions, prompt templates, or any workflow.
"""

from cai.backends._cached import CachedBackend
from cai.backends._embedded import embedded_model_dir
from cai.backends._hf import _FALLBACK_TEMPLATE as FALLBACK_CHAT_TEMPLATE
from cai.backends._hf import ModelSource, resolve_spec
from cai.backends._mock import MockBackend, MockRule
from cai.backends._protocol import Backend
from cai.backends._registry import backend_names, load_backend, parse_spec, register_backend

__all__ = [
    "FALLBACK_CHAT_TEMPLATE",
    "Backend",
    "CachedBackend",
    "MockBackend",
    "MockRule",
    "ModelSource",
    "backend_names",
    "embedded_model_dir",
    "load_backend",
    "parse_spec",
    "register_backend",
    "resolve_spec",
]
