"""Pieces shared by the local-model backends (transformers and llama.cpp)."""

from __future__ import annotations

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Plain ChatML, for a model that ships no chat template (a base model)."""

BUGS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    AssertionError,
)
"""Exceptions that mean our code (not the model or the input) is wrong: never turned into
error results, always raised."""
