"""Constitutions: the written principles every workflow critiques, compares and evaluates against.

Owns: the constitution file format (strict, versioned pydantic models), loading YAML with
``FILE:LINE: message`` errors, the bundled packs (``default`` first), which principles apply to a
request (``Constitution.applicable``), the escalation of critique rounds, deterministic principle
sampling, the context/risk router and routed principle choice with tier priority, and the bundled
constitutional demonstrations (critiques and comparisons under single principles) that train
evaluators.
Must not know: models, backends, prompt templates or any workflow that uses the principles.
"""

from cai.constitution._demonstrations import (
    ComparisonDemonstration,
    CritiqueDemonstration,
    bundled_demonstrations_path,
    demo_split,
    load_comparison_demonstrations,
    load_critique_demonstrations,
)
from cai.constitution._escalation import EscalationStep, escalation_levels, escalation_step
from cai.constitution._loader import (
    default_constitution_path,
    load_constitution,
    load_constitution_text,
    load_default,
    pack_names,
    pack_path,
    resolve_constitution,
)
from cai.constitution._model import (
    HELPFULNESS_TIER,
    RISK_ORDER,
    Constitution,
    Direction,
    Escalation,
    EscalationByTier,
    FewShotExample,
    Layer,
    LayerCondition,
    Principle,
    Provenance,
    Risk,
    Stakeholder,
)
from cai.constitution._priority import resolve, sample_routed
from cai.constitution._router import ClassifyFn, EmbedFn, Router, RoutingSpec, default_routing
from cai.constitution._sampling import PrincipleSampler

__all__ = [
    "HELPFULNESS_TIER",
    "RISK_ORDER",
    "ClassifyFn",
    "ComparisonDemonstration",
    "Constitution",
    "CritiqueDemonstration",
    "Direction",
    "EmbedFn",
    "Escalation",
    "EscalationByTier",
    "EscalationStep",
    "FewShotExample",
    "Layer",
    "LayerCondition",
    "Principle",
    "PrincipleSampler",
    "Provenance",
    "Risk",
    "Router",
    "RoutingSpec",
    "Stakeholder",
    "bundled_demonstrations_path",
    "default_constitution_path",
    "default_routing",
    "demo_split",
    "escalation_levels",
    "escalation_step",
    "load_comparison_demonstrations",
    "load_constitution",
    "load_constitution_text",
    "load_critique_demonstrations",
    "load_default",
    "pack_names",
    "pack_path",
    "resolve",
    "resolve_constitution",
    "sample_routed",
]
