"""What red-teaming writes to disk: the settings, the archive, every attempt and every model call.

Owns: the strict, versioned record types of an output directory:
``archive.json`` (``Archive``: settings, progress and the best prompt per cell, rewritten
atomically after every generation), ``attempts.jsonl`` (``Attempt``, one per candidate prompt),
``calls.jsonl`` (``CallRecord``, one per model request: the budget is counted from it),
``summary.json`` (``RedteamSummary``) and atomic JSON writing.
Must not know: how attempts are generated or judged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cai.records import Strict
from cai.scoring import Rate, RefusalLabel

AttemptStatus = Literal[
    "judged",
    "attacker_refused",
    "attacker_error",
    "empty",
    "duplicate",
    "target_error",
    "judge_error",
]
"""judged: the target answered and the reply was labelled; attacker_refused: the attacker model
declined to write the attack; attacker_error / target_error / judge_error: a model request failed
(unassessed: in no rate, retried by the next run); empty: the attacker wrote nothing usable;
duplicate: too close to an earlier prompt (never sent)."""
FAILED_STATUSES = ("attacker_error", "target_error", "judge_error")
"""Statuses of attempts whose model calls failed: unassessed, and retried by the next run."""

CallRole = Literal["attacker", "target", "judge"]


def _compliance() -> list[RefusalLabel]:
    return ["full_compliance"]


def cell_key(category: str, style: str) -> str:
    """The archive key of a (category, style) cell."""
    return f"{category}|{style}"


class RedteamConfig(Strict):
    """Settings of one red-team search (stored in the archive; a resume must use the same)."""

    version: Literal[1] = 1
    """Schema version."""
    budget: int = Field(ge=1)
    """Model calls allowed in all (attacker + target + judge requests, failed ones included;
    the calls of a rerun that retries failed attempts are not counted)."""
    batch_size: int = Field(8, ge=1)
    """Candidate prompts per generation."""
    styles: list[str] = Field(min_length=1)
    """Attack style ids (the archive's columns)."""
    categories: list[str] = Field(min_length=1)
    """Risk category ids (the archive's rows)."""
    seeds: str = "builtin:harmful"
    """Prompt set whose train split seeds each category."""
    seed: int = 0
    """Seed for cell and parent selection and for attacker sampling."""
    similarity_threshold: float = Field(0.9, gt=0.0, le=1.0)
    """A candidate whose cosine similarity to an earlier prompt reaches this is a duplicate."""
    embedder: str = "minilm"
    """Sentence embedder for near-duplicate rejection and diversity."""
    detector: str = "rules"
    """Refusal detector (the one ``cai eval`` uses) labelling target and attacker replies."""
    success_labels: list[RefusalLabel] = Field(default_factory=_compliance)
    """Detector labels of the target's reply that count as a successful attack."""
    attacker_temperature: float = Field(0.9, ge=0.0)
    """Sampling temperature of the attacker (0: greedy)."""
    attacker_max_new_tokens: int = Field(96, ge=8)
    """Token limit of one attacker reply."""
    target_max_new_tokens: int = Field(128, ge=8)
    """Token limit of one target reply."""
    max_turns: int = Field(3, ge=1)
    """Most user messages sent for a multi-turn style."""


class Elite(Strict):
    """The most effective prompt found so far for one cell."""

    attempt_id: str
    """The attempt that produced it."""
    turns: list[str]
    """The user message(s) sent to the target."""
    goal: str
    """The seed request its lineage started from (what the attack must still ask for)."""
    success: bool
    """True when the target's reply counted as a successful attack."""
    quality: float
    """How effective it is: 1 for a success, plus half the judge's P(harmful help) when judged."""
    label: RefusalLabel
    """The detector's label of the target's reply."""


class Archive(Strict):
    """The search state: settings, progress and one elite per (category, style) cell."""

    version: Literal[1] = 1
    """Schema version."""
    config: RedteamConfig
    """The settings this archive was built with."""
    models: dict[str, str]
    """Model spec per role: target, attacker, judge (when one is used)."""
    template_version: str
    """Attacker template NAME/REVISION."""
    detector: str
    """Detector name/version."""
    generations: int = 0
    """Generations finished."""
    calls: int = 0
    """Model calls spent (the length of calls.jsonl when this was saved)."""
    cells: dict[str, Elite] = Field(default_factory=dict)
    """Elite per cell, keyed 'category|style'."""


class Attempt(Strict):
    """One candidate prompt: who made it from what, and what the target did with it."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """'g{generation}-{index}', unique in the output directory."""
    generation: int
    """Generation it belongs to."""
    category: str
    """Risk category of the cell."""
    style: str
    """Attack style the attacker was asked to apply."""
    parent_id: str
    """Seed prompt id or attempt id it was mutated from."""
    parent: str
    """The parent's text (all turns joined)."""
    goal: str
    """The seed request the lineage started from; the attacker is told to keep asking for it."""
    attacker_output: str
    """The attacker model's raw reply."""
    turns: list[str] = Field(default_factory=list)
    """The user message(s) parsed from it."""
    status: AttemptStatus
    """What happened (see ``AttemptStatus``)."""
    attacker_label: RefusalLabel | None = None
    """The refusal detector's label of the attacker's reply."""
    similarity: float | None = None
    """Highest cosine similarity to an earlier prompt (or the parent)."""
    replies: list[str] = Field(default_factory=list)
    """The target's reply to each turn."""
    label: RefusalLabel | None = None
    """The detector's label of the target's last reply."""
    reason: str | None = None
    """The detector's reason, or the error text."""
    judge_p: float | None = None
    """The harm judge's P(the reply helps with the harm), when a judge is used."""
    success: bool = False
    """The attack succeeded."""
    quality: float = 0.0
    """Effectiveness used to rank prompts within a cell."""
    models: dict[str, str]
    """Model spec per role."""
    template_version: str
    """Attacker template NAME/REVISION."""
    seed: int
    """Sampling seed of the attacker call."""
    retry_of: str | None = None
    """The failed attempt this one retries (a rerun retries every failed attempt under the id
    ``ID~N``); the failed one then counts no more."""


class CallRecord(Strict):
    """One model request, successful or not. The budget is the number of these records."""

    version: Literal[1] = 1
    """Schema version."""
    id: str
    """'ATTEMPT:ROLE:TURN', so a rerun of an unfinished generation never counts a call twice."""
    role: CallRole
    """attacker, target or judge."""
    model: str
    """Model spec."""
    ok: bool
    """False when the request failed."""
    error: str | None = None
    """Why it failed."""
    cached: bool = False
    """Answered from the response cache."""


class CellStats(Strict):
    """Attack success in one archive cell."""

    category: str
    """Row."""
    style: str
    """Column."""
    asr: Rate
    """Successes over judged attempts (undetermined replies left out of n)."""
    attempts: int
    """Candidates generated for this cell (every status)."""
    best: str | None = None
    """The elite prompt, when the cell has one."""


class Diversity(Strict):
    """How varied the successful prompts are."""

    unique_successes: int
    """Successful prompts (near-duplicates were rejected before they were sent)."""
    coverage: Rate
    """Cells with at least one success over all cells."""
    one_minus_self_bleu: float | None
    """1 - mean BLEU-4 (n-grams 1 to 4, uniform weights, add-one smoothing above unigrams) of
    each successful prompt against all the others; None with fewer than two."""
    mean_pairwise_distance: float | None
    """Mean of 1 - cosine similarity over all pairs of successful prompts; None with fewer than
    two."""
    embedder: str
    """Embedder behind the distances."""


class RedteamSummary(Strict):
    """summary.json: every rate with n and a 95% Wilson interval."""

    version: Literal[1] = 1
    """Schema version."""
    models: dict[str, str]
    """Model spec per role."""
    detector: str
    """Detector name/version."""
    template_version: str
    """Attacker template NAME/REVISION."""
    budget: int
    """Model calls allowed."""
    calls: dict[str, int]
    """Model calls spent per role, plus 'total' and 'failed'."""
    generations: int
    """Generations finished."""
    statuses: dict[str, int]
    """Attempts per status (a retried attempt replaces the failed one)."""
    unassessed: int = 0
    """Attempts whose model calls failed (attacker_error, target_error, judge_error): in no
    rate; rerunning the same command retries them."""
    asr: Rate
    """Overall attack success rate over judged attempts."""
    per_style: dict[str, Rate]
    """ASR per attack style."""
    per_category: dict[str, Rate]
    """ASR per risk category."""
    cells: list[CellStats]
    """ASR per cell."""
    attacker_refusals: dict[str, Rate]
    """Per style: attacker replies the refusal detector labels a (partial) refusal, over attacker
    replies that came back."""
    diversity: Diversity
    """Diversity of successful prompts."""
