"""The constitution as data: strict, versioned pydantic models and the questions asked of them.

Owns: the shape of a constitution (tiers, stakeholders, layers, principles, worked examples, the
escalation of critique rounds), the cross-reference rules between its parts, which principles
apply to a request, and its digest.
Must not know: YAML, files or line numbers (the loader maps errors back to lines), how principles
are sampled, or how a principle's wording is put into a prompt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cai.errors import InputError
from cai.records import digest
from cai.store._yaml import Loc, describe_error, format_loc

Risk = Literal["low", "medium", "high"]
RISK_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
"""Risk levels from lowest to highest; a layer with ``min_risk`` is on at that level and above."""

HELPFULNESS_TIER = "helpfulness"
"""The tier whose principles push towards answering. ``applicable(kind="harmful")`` drops it;
a constitution without a tier of this name has no helpfulness tier and nothing is dropped."""

Direction = Literal["restrict", "help", "neutral"]
"""Which way a principle pushes a revision: towards declining (restrict), towards answering (help),
or neither (neutral: accuracy, sourcing, disclaimers)."""

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Text = Annotated[str, StringConstraints(min_length=1)]

"""A path into the constitution's data, in pydantic's ``loc`` form: ('principles', 3, 'tier')."""

DEFER_REFERENCES = "defer_references"
"""Validation-context flag: skip the cross-reference check (the loader runs it, with lines)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stakeholder(_Model):
    """Someone whose interests the principles protect."""

    id: Id
    """Unique id, named by principles."""
    weight: float = Field(gt=0)
    """Relative importance, for weighting principles when sampling or routing."""
    description: Text
    """Who this is and what they need from the assistant."""


class LayerCondition(_Model):
    """When a conditional layer switches on."""

    topics: list[Text] = Field(min_length=1)
    """The layer is on when the request has at least one of these topics."""


class Layer(_Model):
    """A group of principles that is on always, or only for some topics and risk levels."""

    id: Id
    """Unique id, named by principles."""
    description: str | None = None
    """What the layer is for."""
    when: LayerCondition | None = None
    """The condition for the layer to be on; without one the layer is always on."""
    min_risk: Risk | None = None
    """Lowest request risk at which a conditional layer is on (None: any risk)."""

    def active(self, topics: Iterable[str], risk: str) -> bool:
        """True when this layer applies to a request with ``topics`` at ``risk``."""
        if self.when is None:
            return True
        if RISK_ORDER[risk] < RISK_ORDER[self.min_risk or "low"]:
            return False
        return not set(self.when.topics).isdisjoint(topics)


class Provenance(_Model):
    """One source a principle came from."""

    source: str
    """File, pack or vote file it came from."""
    constitution: str | None = None
    """``name@digest`` of the source constitution, when it had one."""
    principle_id: str | None = None
    """Its id in the source."""
    stakeholder: str | None = None
    """The stakeholder group that contributed it."""
    score: float | None = None
    """Consensus score, for principles voted in."""


class Principle(_Model):
    """One rule, worded three ways: to find a flaw, to fix it, and to compare two responses."""

    id: Id
    """Unique id, recorded with every critique and preference (for example harm.weapons)."""
    title: str | None = None
    """Short human name."""
    tier: Id
    """Priority tier; must be listed in the constitution's ``priority``."""
    layer: Id
    """The layer this principle belongs to; it applies only while that layer is on."""
    stakeholder: Id
    """Whose interests the principle protects."""
    topics: list[Text] = []
    """Topic hints for routing (not used by ``Constitution.applicable``)."""
    critique: Text
    """Request to the critic: find the ways the last response breaks this principle, and why."""
    revision: Text
    """Request to the critic: rewrite the response so it no longer breaks the principle."""
    compare: Text
    """Question asking which of two responses is better in this respect."""
    direction: Direction | None = None
    """Which way the principle pushes; None: ``help`` in the helpfulness tier, else ``restrict``."""
    provenance: list[Provenance] = []
    """Where the principle came from when it was merged, imported or voted in."""

    @property
    def pushes(self) -> Direction:
        """The effective direction (``direction``, or the tier's default)."""
        if self.direction is not None:
            return self.direction
        return "help" if self.tier == HELPFULNESS_TIER else "restrict"


class FewShotExample(_Model):
    """A worked critique and revision, shown to the critic as an earlier turn."""

    principle_id: Id
    """The principle the critique applies."""
    prompt: Text
    """The user's request."""
    response: Text
    """A flawed assistant response."""
    critique: Text
    """Step-by-step critique of the response under the principle."""
    revision: Text
    """A better response."""


class EscalationByTier(_Model):
    """Escalation levels taken from the tiers: one level per tier, lowest priority first, so the
    last critique rounds draw from the highest tier (``escalation: {by: tier}``)."""

    by: Literal["tier"]
    """What the levels are made of (only ``tier`` so far)."""
    tiers: list[Id] | None = None
    """The tiers to use, in round order; None: every tier of ``priority``, lowest first."""


Escalation = list[list[str]] | EscalationByTier
"""Principle sets of rising specificity or tier for critique rounds 1, 2, ...: explicit lists of
principle ids, or ``{by: tier}``."""


class Constitution(_Model):
    """A written constitution: prioritised tiers, stakeholders, layers, principles, examples."""

    version: Literal[1]
    """File format version."""
    name: Id
    """Short name, recorded with the digest in every record produced under it."""
    description: str | None = None
    """What this constitution is for."""
    priority: list[Id] = Field(min_length=1)
    """Tiers from highest to lowest priority; an earlier tier wins a conflict."""
    stakeholders: list[Stakeholder] = Field(min_length=1)
    """Whose interests the principles protect."""
    layers: list[Layer] = Field(min_length=1)
    """Groups of principles, always on or conditional."""
    principles: list[Principle] = Field(min_length=1)
    """The rules, in file order."""
    few_shot: list[FewShotExample] = []
    """Worked critique/revision examples."""
    escalation: Escalation | None = None
    """Principle sets for escalating critique rounds (round k draws from level k, the last level
    repeating); None: every round samples from all applicable principles."""

    @field_validator("escalation", mode="before")
    @classmethod
    def _escalation_shape(cls, value: object) -> object:
        """One plain message for a wrongly shaped escalation (not one per union member)."""
        if value is None or isinstance(value, EscalationByTier):
            return value
        if isinstance(value, dict):
            try:
                return EscalationByTier.model_validate(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ValueError(describe_error(err, "escalation")) from None
        if isinstance(value, list):
            for i, level in enumerate(value):
                if not isinstance(level, list) or not all(isinstance(x, str) for x in level):
                    raise ValueError(f"level {i + 1} must be a list of principle ids")
            return value
        raise ValueError("must be a list of levels (lists of principle ids) or {by: tier}")

    @model_validator(mode="after")
    def _check_references(self, info: ValidationInfo) -> Constitution:
        if info.context and info.context.get(DEFER_REFERENCES):
            return self
        problems = reference_errors(self)
        if problems:
            loc, msg = problems[0]
            raise ValueError(f"{format_loc(loc, 'constitution')}: {msg}")
        return self

    def digest(self) -> str:
        """Stable short hash of the content (not of the file's formatting).

        Optional principle fields added after format v1 shipped are left out while they hold
        their default, so the digest of an existing constitution does not change.
        """
        data = self.model_dump(mode="json")
        if data.get("escalation") is None:
            del data["escalation"]  # added after v1 shipped, like _LATER_DEFAULTS
        for p in data["principles"]:
            for key, default in _LATER_DEFAULTS.items():
                if p.get(key) == default:
                    del p[key]
        return digest(data)

    def label(self) -> str:
        """``name@digest``, the form recorded in trace records."""
        return f"{self.name}@{self.digest()}"

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id; InputError if there is none."""
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise InputError(f"constitution {self.name!r} has no principle {principle_id!r}")

    def tier_rank(self, tier: str) -> int:
        """Position of ``tier`` in ``priority``: 0 is the highest priority."""
        try:
            return self.priority.index(tier)
        except ValueError:
            known = ", ".join(self.priority)
            raise InputError(f"unknown tier {tier!r}: expected one of {known}") from None

    def applicable(
        self, kind: str | None = None, topics: Iterable[str] = (), risk: str = "low"
    ) -> list[Principle]:
        """Principles of the layers that are on for a request, in file order.

        A layer without ``when`` is always on; a conditional layer is on when one of its topics is
        in ``topics`` and ``risk`` is at least its ``min_risk`` (low < medium < high). For
        ``kind="harmful"`` the helpfulness tier (``HELPFULNESS_TIER``) is left out: a harmful
        request is critiqued for harm only. Any other kind gets every tier.
        """
        if risk not in RISK_ORDER:
            raise InputError(f"unknown risk {risk!r}: expected one of low, medium, high")
        wanted = set(topics)
        on = {ly.id for ly in self.layers if ly.active(wanted, risk)}
        skip_tier = HELPFULNESS_TIER if kind == "harmful" else None
        return [p for p in self.principles if p.layer in on and p.tier != skip_tier]

    def stakeholder(self, stakeholder_id: str) -> Stakeholder:
        """The stakeholder with this id; InputError if there is none."""
        for s in self.stakeholders:
            if s.id == stakeholder_id:
                return s
        raise InputError(f"constitution {self.name!r} has no stakeholder {stakeholder_id!r}")

    def for_stakeholder(self, stakeholder_id: str) -> Constitution:
        """The same constitution keeping only this stakeholder's principles (and its examples)."""
        keep = [p for p in self.principles if p.stakeholder == stakeholder_id]
        if not keep:
            raise InputError(f"stakeholder {stakeholder_id!r} has no principles in {self.name!r}")
        ids = {p.id for p in keep}
        escalation = self.escalation
        if isinstance(escalation, list):  # keep the levels that still name a principle
            escalation = [lv for lv in ([i for i in lv if i in ids] for lv in escalation) if lv]
            escalation = escalation or None
        elif escalation is not None:
            tiers = {p.tier for p in keep}
            kept_tiers = [t for t in escalation_tiers(self) if t in tiers]
            escalation = escalation.model_copy(update={"tiers": kept_tiers})
        return self.model_copy(
            update={
                "name": f"{self.name}.{stakeholder_id}",
                "principles": keep,
                "few_shot": [ex for ex in self.few_shot if ex.principle_id in ids],
                "escalation": escalation,
            }
        )


_LATER_DEFAULTS: dict[str, object] = {"direction": None, "provenance": []}


def reference_errors(c: Constitution) -> list[tuple[Loc, str]]:
    """Broken cross-references and duplicate ids, each with the path of the offending value."""
    problems: list[tuple[Loc, str]] = []

    def unique(field: str, ids: list[str], what: str) -> dict[str, None]:
        seen: dict[str, None] = {}  # a dict keeps file order for the messages below
        for i, item_id in enumerate(ids):
            if item_id in seen:
                loc: Loc = (field, i) if field == "priority" else (field, i, "id")
                problems.append((loc, f"duplicate {what} {item_id!r}"))
            seen[item_id] = None
        return seen

    tiers = unique("priority", c.priority, "tier")
    stakeholders = unique("stakeholders", [s.id for s in c.stakeholders], "stakeholder id")
    layers = unique("layers", [ly.id for ly in c.layers], "layer id")
    principles = unique("principles", [p.id for p in c.principles], "principle id")
    for i, ly in enumerate(c.layers):
        if ly.min_risk is not None and ly.when is None:
            problems.append(
                (
                    ("layers", i, "min_risk"),
                    "min_risk needs a 'when' condition (a layer without 'when' is always on)",
                )
            )
    for i, p in enumerate(c.principles):
        for field, known, where in (
            ("tier", tiers, "priority"),
            ("layer", layers, "layers"),
            ("stakeholder", stakeholders, "stakeholders"),
        ):
            value = getattr(p, field)
            if value not in known:
                listed = ", ".join(known) or "none"
                problems.append(
                    (
                        ("principles", i, field),
                        f"principle {p.id!r} names {field} {value!r}, which is not in "
                        f"{where} ({listed})",
                    )
                )
    for i, ex in enumerate(c.few_shot):
        if ex.principle_id not in principles:
            problems.append(
                (("few_shot", i, "principle_id"), f"unknown principle {ex.principle_id!r}")
            )
    problems += _escalation_errors(c, principles, tiers)
    return problems


def escalation_tiers(c: Constitution) -> list[str]:
    """The tiers of a ``{by: tier}`` escalation in round order ([] for explicit levels)."""
    if not isinstance(c.escalation, EscalationByTier):
        return []
    if c.escalation.tiers is not None:
        return list(c.escalation.tiers)
    return list(reversed(c.priority))


def _escalation_errors(
    c: Constitution, principles: dict[str, None], tiers: dict[str, None]
) -> list[tuple[Loc, str]]:
    """Empty levels, unknown principle ids and tiers without principles in ``escalation``."""
    problems: list[tuple[Loc, str]] = []
    esc = c.escalation
    if esc is None:
        return problems
    if isinstance(esc, list):
        if not esc:
            problems.append((("escalation",), "escalation has no levels"))
        for i, level in enumerate(esc):
            if not level:
                problems.append((("escalation", i), f"escalation level {i + 1} is empty"))
            seen: set[str] = set()
            for j, pid in enumerate(level):
                if pid not in principles:
                    problems.append(
                        (
                            ("escalation", i, j),
                            f"escalation level {i + 1} names unknown principle {pid!r}",
                        )
                    )
                elif pid in seen:
                    problems.append(
                        (("escalation", i, j), f"escalation level {i + 1} lists {pid!r} twice")
                    )
                seen.add(pid)
        return problems
    with_principles = {p.tier for p in c.principles}
    loc: Loc = ("escalation", "by")
    if esc.tiers is not None and not esc.tiers:
        problems.append((("escalation", "tiers"), "escalation has no tiers"))
    for k, tier in enumerate(escalation_tiers(c)):
        if esc.tiers is not None:
            loc = ("escalation", "tiers", k)
        if tier not in tiers:
            listed = ", ".join(tiers) or "none"
            problems.append((loc, f"escalation names tier {tier!r}, not in priority ({listed})"))
        elif tier not in with_principles:
            hint = "" if esc.tiers is not None else " (list the tiers to use under 'tiers')"
            problems.append((loc, f"escalation tier {tier!r} has no principles{hint}"))
    return problems
