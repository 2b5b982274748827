"""Load prompt templates shipped as package data (YAML files next to the workflow using them)."""

from __future__ import annotations

import re
from importlib import resources

from pydantic import ValidationError
from ruamel.yaml import YAML

from cai.errors import InputError
from cai.records import PromptTemplate


def load_template(package: str, filename: str) -> PromptTemplate:
    """Read ``filename`` from ``package`` and check each part only uses declared variables."""
    path = resources.files(package) / filename
    where = f"{package}/{filename}"
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        tpl = PromptTemplate.model_validate(data)
    except (OSError, ValidationError) as exc:
        raise InputError(f"{where}: bad prompt template: {exc}") from None
    for part in tpl.parts:
        extra = tpl.placeholders(part) - set(tpl.variables)
        if extra:
            raise InputError(f"{where}: part {part!r} uses undeclared variables {sorted(extra)}")
    for var, tag in tpl.quote.items():
        if var not in tpl.variables:
            raise InputError(f"{where}: quote names undeclared variable {var!r}")
        if not re.fullmatch(r"[a-z][a-z_]*", tag):
            raise InputError(f"{where}: quote tag {tag!r} of {var!r} must be lowercase letters")
    return tpl
