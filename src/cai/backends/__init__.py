"""Model backends: one batch-first interface over mock, transformers, OpenAI-style servers.

Owns: the ``Backend`` protocol, model-spec parsing and the registry, the response-cache wrapper,
sentence embedders, the control tokens of conditional training (``+cond:``) and the built-in
backends (each lazily imported; only ``hf``/``embedded`` and the ``minilm`` embedder touch
torch).
Must not know: constitutions, prompt templates, or any workflow.
"""

from cai.backends._cached import CachedBackend
from cai.backends._common import cpu_has_fast_bf16
from cai.backends._control import (
    CONTROL_FILE,
    OK_TOKEN,
    ControlFile,
    find_control_token,
    is_control_token,
    read_control,
    violates_token,
)
from cai.backends._embedded import cache_root, embedded_model_dir
from cai.backends._embeddings import (
    Embedder,
    HashEmbedder,
    MiniLMEmbedder,
    cosine_matrix,
    embedder_names,
    get_embedder,
    register_embedder,
)
from cai.backends._hf import _FALLBACK_TEMPLATE as FALLBACK_CHAT_TEMPLATE
from cai.backends._hf import ModelSource, resolve_spec
from cai.backends._mock import MockBackend, MockRule
from cai.backends._protocol import Backend
from cai.backends._ray import RayBackend, init_ray
from cai.backends._registry import backend_names, load_backend, parse_spec, register_backend

__all__ = [
    "CONTROL_FILE",
    "FALLBACK_CHAT_TEMPLATE",
    "OK_TOKEN",
    "Backend",
    "CachedBackend",
    "ControlFile",
    "Embedder",
    "HashEmbedder",
    "MiniLMEmbedder",
    "MockBackend",
    "MockRule",
    "ModelSource",
    "RayBackend",
    "backend_names",
    "cache_root",
    "cosine_matrix",
    "cpu_has_fast_bf16",
    "embedded_model_dir",
    "embedder_names",
    "find_control_token",
    "get_embedder",
    "init_ray",
    "is_control_token",
    "load_backend",
    "parse_spec",
    "read_control",
    "register_backend",
    "register_embedder",
    "resolve_spec",
    "violates_token",
]
