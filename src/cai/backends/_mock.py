"""The deterministic fake model, shipped in the product and registered like any real backend.

``mock`` answers every request with pseudo-text derived from a digest of the request and seed:
the same request always gets the same answer, different requests get different answers.
``mock:SCRIPT`` (a YAML or JSON file) adds rules tried in order against the last user message:

    rules:
      - when: "(?i)bomb"          # regular expression, searched in the last user message
                                 # (scope: chat searches every message)
        reply: "Sure, step one..." # fixed reply ({n} is replaced by a per-request number)
      - when: "Critique request"
        error: "server overloaded" # this request fails with finish_reason 'error'
      - when: "Which response"
        prefer: 1                  # score(): candidate 1 gets the highest log-probability

Used by tests and by anyone who wants to dry-run a recipe without a model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cai.errors import InputError
from cai.records import Generation, GenerationRequest, SamplingParams, ScoreRequest
from cai.store import first_error

_WORDS = (
    "the",
    "model",
    "considers",
    "a",
    "careful",
    "answer",
    "that",
    "explains",
    "why",
    "safety",
    "matters",
    "and",
    "offers",
    "useful",
    "context",
    "about",
    "the",
    "question",
    "with",
    "clear",
    "steps",
    "examples",
    "sources",
    "and",
    "limits",
    "while",
    "avoiding",
    "harm",
    "respecting",
    "privacy",
    "and",
    "pointing",
    "to",
    "reliable",
    "help",
    "when",
    "it",
    "is",
    "needed",
)


class MockRule(BaseModel):
    """One scripted behaviour."""

    model_config = ConfigDict(extra="forbid")

    when: str
    """Regular expression searched in the last user message (and the prefill)."""
    scope: Literal["last_user", "chat"] = "last_user"
    """Where ``when`` is searched: the last user message, or every message of the chat."""
    reply: str | None = None
    """Fixed reply for generate()."""
    error: str | None = None
    """Fail the request with this message."""
    finish: str = "stop"
    """finish_reason for a scripted reply: stop or length."""
    prefer: int | None = None
    """For score(): index of the candidate that gets the highest log-probability."""


class MockScript(BaseModel):
    """A mock script file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    """Schema version."""
    rules: list[MockRule] = []
    """Rules, first match wins."""


def _h(*parts: object) -> int:
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


class MockBackend:
    """Deterministic, rule-scriptable fake model."""

    def __init__(self, spec: str = "mock", *, rules: Sequence[MockRule] | None = None) -> None:
        self.spec = spec
        self.calls = 0
        self.requests_seen = 0
        _, _, path = spec.partition(":")
        script = MockScript(rules=list(rules or []))
        if path:
            script = _load_script(Path(path))
        self.rules = [(re.compile(r.when), r) for r in script.rules]

    def _match(self, messages: Sequence[Any], prefill: str) -> MockRule | None:
        last = _last_user_msgs(messages) + "\n" + prefill
        chat = "\n".join(m.content for m in messages) + "\n" + prefill
        for pattern, rule in self.rules:
            if pattern.search(chat if rule.scope == "chat" else last):
                return rule
        return None

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        self.calls += 1
        self.requests_seen += len(requests)
        return [self._one(r, params) for r in requests]

    def _one(self, req: GenerationRequest, params: SamplingParams) -> Generation:
        prompt_tokens = sum(len(m.content.split()) for m in req.messages)
        seed = params.seed if params.temperature > 0 else 0
        h = _h(req.key(), seed)
        rule = self._match(req.messages, req.prefill)
        if rule is not None and rule.error is not None:
            return Generation(text="", finish_reason="error", error=rule.error)
        if rule is not None and rule.reply is not None:
            text = rule.reply.replace("{n}", str(h % 1000))
            finish = "length" if rule.finish == "length" else "stop"
        else:
            n = 8 + h % 17
            words = [_WORDS[_h(h, i) % len(_WORDS)] for i in range(n)]
            text = f"Mock answer {h % 10_000}: " + " ".join(words) + "."
            finish = "stop"
        tokens = text.split()
        if len(tokens) > params.max_new_tokens:
            text, finish = " ".join(tokens[: params.max_new_tokens]), "length"
        for s in params.stop:
            if s and s in text:
                text, finish = text.split(s, 1)[0], "stop"
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text.split()),
        )

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.calls += 1
        self.requests_seen += len(requests)
        out = []
        for r in requests:
            rule = self._match(r.messages, r.prefill)
            scores = [-1.0 - (_h(r.model_dump_json(), c) % 1000) / 250 for c in r.candidates]
            if rule is not None and rule.prefer is not None and rule.prefer < len(scores):
                scores[rule.prefer] = max(scores) + 1.0
            out.append(scores)
        return out

    def close(self) -> None:
        return None


def _last_user_msgs(messages: Sequence[Any]) -> str:
    for m in reversed(messages):
        if m.role == "user":
            return str(m.content)
    return ""


def _load_script(path: Path) -> MockScript:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path.exists():
        raise InputError(f"{path}: mock script not found")
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON: {exc}") from None
    try:
        script = MockScript.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {first_error(exc)}") from None
    for i, rule in enumerate(script.rules):
        try:
            re.compile(rule.when)
        except re.error as exc:
            raise InputError(f"{path}: rules.{i}.when: bad regular expression: {exc}") from None
    return script
