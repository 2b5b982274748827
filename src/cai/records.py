"""Shared record types: the shapes that flow between stages and land on disk.

Owns: chat messages, generation requests and results, sampling settings, prompt records and the
SL-CAI trace records. Every on-disk record is a strict, versioned pydantic model (unknown fields
are an error) with a docstring per field.
Must not know: any model, backend, file layout or workflow logic.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "error"]
PromptKind = Literal["harmful", "helpful", "borderline", "custom"]
Split = Literal["train", "heldout"]


class Strict(BaseModel):
    """Base for every record: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class Frozen(BaseModel):
    """Base for value objects used as cache keys: immutable, unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(Frozen):
    """One chat turn."""

    role: Role
    """Who speaks: system, user or assistant."""
    content: str
    """The text of the turn."""


class SamplingParams(Frozen):
    """Sampling settings for one generate call; part of every cache key."""

    max_new_tokens: int = Field(256, ge=1)
    """Upper bound on generated tokens per request."""
    temperature: float = Field(0.0, ge=0.0)
    """0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (ignored when greedy)."""
    seed: int = 0
    """Seed for sampling; recorded with every output."""
    stop: tuple[str, ...] = ()
    """Strings that end generation; they are not included in the output."""


class GenerationRequest(Frozen):
    """A chat to continue. ``prefill`` starts the assistant turn with fixed text."""

    messages: tuple[Message, ...]
    """The conversation so far; the model writes the next assistant turn."""
    prefill: str = ""
    """Text the assistant turn starts with; not repeated in the output."""

    @classmethod
    def user(cls, text: str, *, system: str | None = None) -> GenerationRequest:
        """A one-turn request, optionally with a system message."""
        msgs = [Message(role="system", content=system)] if system else []
        msgs.append(Message(role="user", content=text))
        return cls(messages=tuple(msgs))

    def key(self) -> str:
        """A stable digest of the request, for caching and record ids."""
        return digest(self.model_dump(mode="json"))


class Generation(Strict):
    """The result of one request."""

    text: str
    """Generated text (after the prefill, stop strings removed)."""
    finish_reason: FinishReason
    """stop: ended naturally; length: hit max_new_tokens; error: the backend failed."""
    prompt_tokens: int = 0
    """Tokens in the rendered prompt."""
    completion_tokens: int = 0
    """Tokens generated."""
    error: str | None = None
    """What went wrong, when finish_reason is error."""
    cached: bool = False
    """True when served from the response cache."""


class ScoreRequest(Frozen):
    """Candidate continuations of an assistant turn to score by log-probability."""

    messages: tuple[Message, ...]
    """The conversation; the candidates continue the next assistant turn."""
    prefill: str = ""
    """Assistant text before the candidate (for example 'The answer is (')."""
    candidates: tuple[str, ...]
    """Continuations to score, for example ('A', 'B')."""


class PromptRecord(Strict):
    """One prompt of a prompt set."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """Stable id, unique within the set."""
    text: str
    """The user request."""
    category: str
    """Harm category for harmful prompts, topic otherwise."""
    kind: PromptKind = "custom"
    """harmful (red-team seed), helpful (helpfulness mix), borderline (safe but looks risky)."""
    split: Split = "train"
    """train or heldout, assigned by a fixed rule."""
    source: str = "user"
    """Where the prompt came from (a bundled set name, a file, a dataset id)."""


class CritiqueRound(Strict):
    """One critique-then-revise round of SL-CAI."""

    version: Literal[1] = 1
    """Schema version."""
    principle_id: str
    """The constitution principle sampled for this round."""
    critique: str
    """The critic's chain-of-thought critique of the previous response."""
    revision: str
    """The critic's rewrite of the previous response."""
    critique_finish: FinishReason
    """How the critique generation ended."""
    revision_finish: FinishReason
    """How the revision generation ended."""


class SLCAIRecord(Strict):
    """The full trace of one prompt through the critique-revision loop."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """Record id (the prompt id)."""
    prompt: PromptRecord
    """The red-team prompt."""
    draft: str
    """The policy model's first response."""
    draft_finish: FinishReason
    """How the draft generation ended."""
    rounds: list[CritiqueRound]
    """Critique-revision rounds, in order."""
    final: str
    """The last revision: the SFT target."""
    degenerate: str | None = None
    """Why the record is kept out of the SFT file (None when it is usable)."""
    models: dict[str, str]
    """Model spec per role (policy, critic)."""
    constitution: str
    """Constitution name and content digest."""
    template_version: str
    """Name and version of the prompt templates used."""
    seed: int
    """Seed for principle sampling and generation."""


class SFTExample(Strict):
    """One supervised example in HF conversational format."""

    id: str
    """Id of the trace record it came from."""
    messages: list[Message]
    """user prompt then assistant answer."""


def digest(obj: object, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable object, stable across runs and machines."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
