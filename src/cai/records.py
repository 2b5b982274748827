"""Shared record types: the shapes that flow between stages and land on disk.

Owns: chat messages, generation requests and results, sampling settings, prompt records and the
SL-CAI trace records. Every on-disk record is a strict, versioned pydantic model (unknown fields
are an error) with a docstring per field.
Must not know: any model, backend, file layout or workflow logic.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.errors import InputError

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
    repetition_penalty: float = Field(1.0, gt=0.0)
    """Penalty on tokens already in the context (1.0 = none). Small critics loop without it."""


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


class Route(Strict):
    """How the context/risk router classified a text: topics with scores and a risk tier."""

    version: Literal[1] = 1
    """Schema version."""
    topics: dict[str, float]
    """Topics the router decided on, with their scores in [0, 1]."""
    risk: Literal["low", "medium", "high"]
    """Risk tier decided from the topics and intent cues."""
    scores: dict[str, float] = {}
    """Every topic score worth keeping (at least 0.1), including topics below the threshold."""
    cues: list[str] = []
    """Ids of the intent cues that fired (harmful ``intent.*``, benign ``benign.*``)."""
    router: str
    """Router name/version and the embedder (and classifier) behind it."""


class Resolution(Strict):
    """Which principles a routed critique round could sample, and how tiers were reconciled."""

    version: Literal[1] = 1
    """Schema version."""
    risk: Literal["low", "medium", "high"]
    """Risk the choice was made at (the route's, raised to the prompt kind's floor)."""
    options: list[str]
    """Principle ids the round sampled from."""
    conflict: bool = False
    """True when active principles of different tiers pointed different ways."""
    winner: str | None = None
    """'TIER:DIRECTION' that won the conflict (the highest tier, lexicographically)."""
    dropped: list[str] = []
    """Principle ids left out because a higher tier pointed the other way."""


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
    resolution: Resolution | None = None
    """How the principle was chosen when the router was on (None: flat sampling)."""
    escalation_level: int | None = None
    """1-based level of the constitution's ``escalation`` this round drew its principle from
    (None: no escalation)."""
    escalation_options: list[str] = []
    """Ids of the level's principles that were eligible for this request: the set sampled."""
    revised: bool = True
    """False when the critique found nothing (``SLCAIRecord.stopped_early``): no revision was
    asked for, and ``revision`` is the response it critiqued, unchanged."""


StopReason = Literal["no issue found", "unchanged"]
"""Why a record ran fewer critique rounds than asked: the critic said the response breaks no
part of the principle, or the revision equalled the response it revised (after normalising)."""


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
    route: Route | None = None
    """The router's classification of the prompt (None: flat sampling, no router)."""
    draft_route: Route | None = None
    """The router's classification of the draft."""
    stopped_early: StopReason | None = None
    """Why the loop stopped before the rounds asked for (None: it ran them all, or early
    stopping was off); ``len(rounds)`` is the number of rounds actually run."""


class SFTExample(Strict):
    """One supervised example in HF conversational format."""

    id: str
    """Id of the trace record it came from."""
    messages: list[Message]
    """user prompt then assistant answer."""
    label_source: Literal["ai", "human"] = "ai"
    """Who decided this example is fit to train on: the AI checks, or a human reviewer whose
    verdict overrode them (``cai serve``)."""


class PairRecord(Strict):
    """Two responses to one prompt, to be compared by AI feedback."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """Record id (usually the prompt id)."""
    prompt: PromptRecord
    """The prompt both responses answer."""
    response_a: str
    """First response."""
    response_b: str
    """Second response."""
    models: dict[str, str]
    """Model spec per role (policy) that sampled the responses."""
    seeds: list[int]
    """Sampling seed of each response."""
    source: str = "sampled"
    """'sampled' from a policy, or the file the pair was read from."""


class PreferenceRecord(Strict):
    """An AI-feedback preference in TRL's conversational preference format, plus provenance.

    ``prompt``/``chosen``/``rejected`` are what TRL's DPOTrainer and RewardTrainer read; the other
    fields say how confident the label is and what produced it.
    """

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """Record id (the pair id)."""
    prompt: list[Message]
    """The conversation up to the compared turn (TRL conversational format)."""
    chosen: list[Message]
    """The preferred assistant turn."""
    rejected: list[Message]
    """The other assistant turn."""
    soft_label: float = Field(ge=0.0, le=1.0)
    """Probability that ``chosen`` is better, averaged over both presentation orders (>= 0.5)."""
    margin: float
    """Order-averaged log-probability margin of the chosen option over the other."""
    principle_ids: list[str]
    """Principles the comparison was made under (several for ensembles)."""
    models: dict[str, str]
    """Model spec per role (policy, feedback)."""
    template_version: str
    """Feedback prompt template name/revision."""
    seed: int
    """Seed for principle sampling."""


class PromptTemplate(Strict):
    """A named set of prompt parts with ``{variable}`` placeholders, loaded from a package file.

    Prompts are data: logic renders a part by name and never assembles prompt text inline.
    """

    version: Literal[1] = 1
    """Schema version of the template file."""
    name: str
    """Template family name, for example 'sl_cai'."""
    revision: int
    """Bumped whenever the wording changes; recorded with every output as NAME/REVISION."""
    description: str = ""
    """What the template is for."""
    variables: list[str]
    """Every placeholder any part may use."""
    parts: dict[str, str]
    """Named prompt parts (system text, user turns, prefills...)."""
    quote: dict[str, str] = Field(default_factory=dict)
    """Variables filled as quoted material, each with its marker tag: ``render`` writes such a
    value as a block between ``<TAG-NONCE>`` and ``</TAG-NONCE>`` (``quote_block``), so text
    inside a reply or request can never close its block and pose as the template."""

    @property
    def id(self) -> str:
        """NAME/REVISION, the value stored in records as the template version."""
        return f"{self.name}/{self.revision}"

    def placeholders(self, part: str) -> set[str]:
        """Names used as {placeholders} in one part."""
        return {f for _, f, _, _ in string.Formatter().parse(self.parts[part]) if f}

    def render(self, part: str, **values: str) -> str:
        """Fill one part. Every placeholder it uses must be given."""
        missing = self.placeholders(part) - values.keys()
        if missing:
            raise KeyError(f"template {self.id} part {part!r} needs {sorted(missing)}")
        quoted = {k: quote_block(self.quote[k], v) for k, v in values.items() if k in self.quote}
        return self.parts[part].format(**{**values, **quoted})

    def pattern(self, part: str) -> str:
        """A regular expression (for ``re.DOTALL``) that fully matches a rendered ``part``, with
        one named group per variable holding the value as given (quoted blocks unwrapped).

        A quoted value is found exactly, whatever it contains: its block ends at the first
        closing marker with its own nonce, which the value never contains. An unquoted value is
        matched lazily and can be split at the wrong place when it contains the template's text.
        """
        out, pos = "", 0
        text = self.parts[part]
        for m in re.finditer(r"\{(\w+)\}", text):
            out += re.escape(text[pos : m.start()])
            name = m[1]
            if name in self.quote:
                tag, mark = re.escape(self.quote[name]), f"_nonce_{name}"
                out += f"<{tag}-(?P<{mark}>[0-9a-f]+)>\n(?P<{name}>.*?)\n</{tag}-(?P={mark})>"
            else:
                out += f"(?P<{name}>.*?)"
            pos = m.end()
        return out + re.escape(text[pos:])


QUOTE_NONCE_CHARS = 8
"""Hex digits of a quoted block's nonce."""


def quote_block(tag: str, text: str, *, digits: int = QUOTE_NONCE_CHARS) -> str:
    """``text`` between ``<TAG-NONCE>`` and ``</TAG-NONCE>`` lines, verbatim.

    NONCE (``digits`` hex digits) is derived from the tag and the text, so the same text always
    gets the same block and cached model calls stay valid, and is re-derived with a counter
    (one digit longer every 16 tries) until neither marker occurs in the text: a quoted reply
    cannot forge the end of its own block, whatever it contains.
    """
    for salt in itertools.count():
        blob = f"{tag}\x1f{salt}\x1f{text}".encode()
        nonce = hashlib.sha256(blob).hexdigest()[: digits + salt // 16]
        if f"{tag}-{nonce}>" not in text:
            return f"<{tag}-{nonce}>\n{text}\n</{tag}-{nonce}>"
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(slots=True)
class Failure:
    """A record whose model call failed: not written, retried on the next run."""

    record_id: str
    """The prompt or pair id."""
    step: str
    """Which call failed (draft, critique round 1, sample 2...)."""
    error: str
    """The backend's one-line error."""

    def line(self) -> str:
        """'ID: STEP: ERROR', as stage summaries list failures."""
        return f"{self.record_id}: {self.step}: {self.error}"


def require_unique_ids(ids: Sequence[str], what: str) -> None:
    """Raise InputError naming the first id that appears twice."""
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise InputError(f"{what} id {i!r} appears more than once; ids must be unique")
        seen.add(i)


def digest(obj: object, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable object, stable across runs and machines."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
