"""The oversight config: ordered levels, escalation rules, spot checks and mandatory checkpoints.

Owns: the YAML schema (strict, versioned, a docstring per field), its cross-checks and loading it
with ``FILE:LINE`` errors.
Must not know: how levels run, the verdict store or the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cai.records import digest
from cai.store import load_yaml_model

LevelKind = Literal["source", "rules", "judge", "panel", "human"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Level(_Model):
    """One level of the chain. Levels run in file order; humans come last."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """Short unique id shown in the UI and metrics (for example L1)."""
    kind: LevelKind
    """source: the label the workflow already wrote, with its confidence; rules: the rule-based
    refusal detector; judge: one judge model; panel: several judges voting; human: reviewers."""
    description: str = ""
    """What this level is, for the UI."""
    model: str | None = None
    """Judge model spec (kind judge)."""
    members: list[str] = []
    """Judge model specs of a panel (kind panel); several may be the same model."""
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    """Escalate when this level's confidence is below this (default: the escalation default)."""

    @model_validator(mode="after")
    def _needs(self) -> Level:
        if self.kind == "judge" and not self.model:
            raise ValueError(f"level {self.id}: a judge level needs 'model'")
        if self.kind == "panel" and len(self.members) < 2:
            raise ValueError(f"level {self.id}: a panel needs at least two 'members'")
        return self


class Escalation(_Model):
    """When an item goes to a human."""

    min_confidence: float = Field(0.6, ge=0.0, le=1.0)
    """A level less sure than this escalates the item."""
    disagreement: bool = True
    """Escalate when two levels (or two panel members) give different labels."""
    high_risk_categories: list[str] = []
    """Prompt categories that always go to a human."""
    tiers: list[str] = []
    """Constitution tiers (for example safety) whose principles always go to a human."""
    spot_check_rate: float = Field(0.05, ge=0.0, le=1.0)
    """Share of the other items drawn at random for a human check; they measure the error rate
    of the items humans never see."""
    seed: int = 0
    """Seed of the spot-check draw (the same seed draws the same items)."""


class Checkpoint(_Model):
    """Human reviews required before a training stage may start."""

    before: Literal["sft", "dpo"]
    """The stage that waits."""
    sources: list[str] = Field(min_length=1)
    """Item sources that count (preferences for dpo, sl_cai for sft)."""
    per_1000: float = Field(10.0, ge=0.0, le=1000.0)
    """Reviewed items required per 1,000 items of those sources."""
    min_reviewed: int = Field(1, ge=0)
    """At least this many, however few items there are."""


class OversightConfig(_Model):
    """The hierarchical oversight chain of a run."""

    version: Literal[1] = 1
    """Config format version."""
    name: str = "default"
    """Name recorded with every routing decision."""
    sources: dict[str, list[str]] = {
        "preferences": ["data/preferences.jsonl"],
        "sl_cai": ["data/sl_cai.jsonl"],
        "redteam": [
            "data/redteam.jsonl",
            "redteam/before/attempts.jsonl",
            "redteam/after/attempts.jsonl",
            "attempts.jsonl",
        ],
    }
    """Adapter name -> run-relative files (a single file may be given as a string); missing files
    are skipped. A ``data/`` file is also found at the top of the directory, and
    ``attempts.jsonl`` is ``cai redteam --out DIR``'s archive, so a command's out dir is
    overseen like a run directory."""
    levels: list[Level] = [
        Level(id="L0", kind="source", description="the label the workflow wrote"),
        Level(id="L1", kind="rules", description="rule-based refusal detector"),
        Level(id="L4", kind="human", description="reviewers"),
    ]
    """The chain, lowest level first."""
    escalation: Escalation = Escalation()
    """Escalation rules."""
    checkpoints: list[Checkpoint] = []
    """Mandatory human checkpoints before training stages."""

    @field_validator("sources", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> OversightConfig:
        ids = [lv.id for lv in self.levels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"level ids must be unique, got {ids}")
        humans = [i for i, lv in enumerate(self.levels) if lv.kind == "human"]
        if humans and humans != [len(self.levels) - 1]:
            raise ValueError("the human level must be the last level, and there is only one")
        return self

    def label(self) -> str:
        """``name@digest``, recorded with every routing decision."""
        return f"{self.name}@{digest(self.model_dump(mode='json'))}"

    @property
    def ai_levels(self) -> list[Level]:
        """Every level but the human one."""
        return [lv for lv in self.levels if lv.kind != "human"]


def load_oversight_config(path: str | Path | None) -> OversightConfig:
    """Read an oversight YAML file (None: the defaults). Errors are ``FILE:LINE: key: msg``."""
    if path is None:
        return OversightConfig()
    return load_yaml_model(path, OversightConfig, root="oversight")
