"""Model specs to backend instances.

A spec is ``PREFIX`` or ``PREFIX:ARGUMENT`` (see DESIGN.md). Built-in backends are registered by
module path so that resolving ``mock`` never imports torch; plugins call ``register_backend``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cai.backends._protocol import Backend
from cai.errors import InputError

Factory = Callable[..., Backend]

_BUILTIN: dict[str, str] = {
    "mock": "cai.backends._mock:MockBackend",
    "embedded": "cai.backends._hf:HFBackend",
    "hf": "cai.backends._hf:HFBackend",
    "run": "cai.backends._hf:HFBackend",
    "probe": "cai.backends._probe:RewardProbeBackend",
    "openai": "cai.backends._openai:OpenAIBackend",
    "gguf": "cai.backends._gguf:GGUFBackend",
    "vllm": "cai.backends._vllm:VLLMBackend",
}
_REGISTERED: dict[str, Factory] = {}


def register_backend(prefix: str, factory: Factory) -> None:
    """Make ``prefix:...`` specs resolve to ``factory(spec, **options)``."""
    _REGISTERED[prefix] = factory


def backend_names() -> list[str]:
    """Every spec prefix that resolves."""
    return sorted({*_BUILTIN, *_REGISTERED})


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``prefix:argument``; raise InputError for an unknown prefix.

    A ``+steer:`` suffix (steering vectors, ``_steer``) is part of the argument, and so is a
    ``+cond:`` suffix (a control token, ``_control``); the prefix is the base model's, which
    must then be a transformers one.
    """
    from cai.backends._control import split_cond
    from cai.backends._steer import split_steer

    spec = split_cond(spec)[0]  # InputError when a cond suffix follows a model it cannot take
    split_steer(spec)  # InputError when a steer suffix follows a model it cannot steer
    prefix, _, arg = spec.partition(":")
    if prefix.endswith("+steer"):  # embedded+steer:...: the prefix takes no argument of its own
        prefix, arg = prefix.removesuffix("+steer"), spec.partition("+")[2]
    if prefix not in _BUILTIN and prefix not in _REGISTERED:
        known = ", ".join(backend_names())
        raise InputError(f"unknown model spec {spec!r}: the prefix must be one of {known}")
    return prefix, arg


def load_backend(spec: str, **options: Any) -> Backend:
    """Instantiate the backend a spec names. Options go to the backend's constructor."""
    prefix, _ = parse_spec(spec)
    if prefix in _REGISTERED:
        return _REGISTERED[prefix](spec, **options)
    module_name, _, attr = _BUILTIN[prefix].partition(":")
    factory: Factory = getattr(importlib.import_module(module_name), attr)
    return factory(spec, **options)
