"""Control tokens of conditional training: the file a pretrained model carries and the ``+cond:``
spec suffix that picks (or drops) the token its requests are conditioned on.

Owns: the token spelling (``<|ok|>``, ``<|violates:ID|>``), ``ControlFile`` (``control.json``
beside the weights of a model trained with control tokens: which tokens its tokenizer gained and
which one generation is conditioned on by default), parsing ``SPEC+cond:TOKEN`` and
``SPEC+cond:none``, and deciding the text every request's assistant turn starts with.
Must not know: how a corpus was labelled, how the model was trained, or any workflow.

Where the token goes: at the start of the assistant turn, before any prefill, which is where
the pre-training corpus put it (``cai.train.pretrain``). A model directory holding
``control.json`` is conditioned on its ``condition`` token whenever it is loaded, and the
backend's spec says so (``run:DIR+cond:<|ok|>``), so the token is in every record's model name
and in the response-cache key; ``+cond:none`` loads the same weights unconditioned.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from cai.errors import InputError
from cai.records import Strict

OK_TOKEN = "<|ok|>"
"""The control token of text that satisfies the active principles."""
COND_MARK = "+cond:"
"""What separates a model spec from its conditioning (``+cond:TOKEN`` or ``+cond:none``)."""
CONTROL_FILE = "control.json"
"""Written beside the weights of a model trained with control tokens."""
CONDITIONABLE = ("embedded", "hf", "run")
"""Spec prefixes a cond suffix may follow (transformers models)."""
_TOKEN = re.compile(r"<\|(ok|violates:[^|<>\s]+)\|>")


def violates_token(principle_id: str) -> str:
    """The control token of text that violates principle ``principle_id``."""
    return f"<|violates:{principle_id}|>"


def is_control_token(text: str) -> bool:
    """Whether ``text`` is one control token (``<|ok|>`` or ``<|violates:ID|>``)."""
    return _TOKEN.fullmatch(text) is not None


def find_control_token(text: str) -> str | None:
    """The first control token spelled inside ``text`` (corpus text must hold none), or None."""
    m = _TOKEN.search(text)
    return m.group(0) if m else None


class ControlFile(Strict):
    """``control.json``: the control tokens a model was trained with."""

    version: Literal[1] = 1
    """Schema version."""
    tokens: list[str] = Field(min_length=1)
    """Every control token the tokenizer holds for the model, the default condition first."""
    condition: str = OK_TOKEN
    """The token every request is conditioned on unless the spec says otherwise."""
    position: Literal["assistant_start"] = "assistant_start"
    """Where the token goes: the start of the assistant turn, before any prefill."""


def read_control(model_dir: Path) -> ControlFile | None:
    """The ``control.json`` of a model directory, None when it has none; InputError if broken."""
    path = model_dir / CONTROL_FILE
    if not path.is_file():
        return None
    try:
        return ControlFile.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a valid control-token file: {first}") from None


def split_cond(spec: str) -> tuple[str, str | None]:
    """``BASE+cond:ARG`` -> (BASE, ARG); a spec without the suffix -> (spec, None)."""
    base, mark, arg = spec.rpartition(COND_MARK)
    if not mark:
        return spec, None
    if base.partition(":")[0].removesuffix("+steer") not in CONDITIONABLE:
        raise InputError(
            f"model spec {spec!r}: conditioning needs a transformers model "
            f"({', '.join(CONDITIONABLE)}), not {base!r}"
        )
    if arg != "none" and not is_control_token(arg):
        raise InputError(
            f"model spec {spec!r}: expected +cond:none or +cond:<|ok|> (a control token)"
        )
    return base, arg


def control_prefix(spec: str, cond: str | None, control: ControlFile | None) -> str:
    """The text every assistant turn starts with: ``cond`` (``none``: nothing), else the model's
    default condition, else nothing. InputError for a token the model was not trained with."""
    if cond == "none":
        return ""
    if cond is None:
        return control.condition if control is not None else ""
    if control is None:
        raise InputError(f"model spec {spec!r}: the model has no control tokens ({CONTROL_FILE})")
    if cond not in control.tokens:
        raise InputError(
            f"model spec {spec!r}: {cond} is not one of the model's control tokens "
            f"({', '.join(control.tokens[:6])}{', ...' if len(control.tokens) > 6 else ''})"
        )
    return cond
