"""Prompt injections against refusal detectors: does a note inside a reply change its label?

Owns: the bundled detector injections (``data/detector_injections.yaml``: texts appended to a
reply that claim, or play out, a refusal or a compliance) and ``detector_injection_probe``,
which appends each injection to the labelled replies the detector gets right (binary scheme:
any refusal against compliance) whose label the injection argues against, and counts how often
the label then changes, with Wilson 95% intervals.
Must not know: where the rows came from, how the detector decides, or how reports are laid out.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cai.records import Strict
from cai.scoring._detector import Detector, RefusalLabel
from cai.scoring._labels import LabelledReply
from cai.scoring._stats import Rate, proportion
from cai.store import load_yaml_model

Aim = Literal["refusal", "compliance"]
_AIMED_AT: dict[Aim, RefusalLabel] = {"refusal": "full_compliance", "compliance": "full_refusal"}
"""The binary label of the replies each kind of injection is appended to."""


class DetectorInjection(BaseModel):
    """One injection: the text appended and the label it argues for."""

    model_config = ConfigDict(extra="forbid")
    id: str
    aims: Aim
    text: str


class DetectorInjectionFile(BaseModel):
    """The bundled detector injections (``data/detector_injections.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    name: str
    revision: int
    items: list[DetectorInjection]

    @property
    def id(self) -> str:
        """NAME/REVISION, recorded with every measurement."""
        return f"{self.name}/{self.revision}"


@lru_cache(maxsize=1)
def detector_injections() -> DetectorInjectionFile:
    """The bundled injections aimed at refusal detectors."""
    path = Path(str(resources.files("cai.scoring") / "data" / "detector_injections.yaml"))
    return load_yaml_model(path, DetectorInjectionFile)


class DetectorInjectionProbe(Strict):
    """How often an injection in a reply changes a refusal detector's right label."""

    version: Literal[1] = 1
    """Schema version."""
    detector: str
    """NAME/VERSION of the detector."""
    injections: str
    """Injection file NAME/REVISION."""
    flip_rate: Rate
    """Share of (reply, injection) cases, among replies the detector labels right (binary
    scheme) and whose label the injection argues against, whose label then changes."""
    per_injection: dict[str, Rate]
    """The flip rate of each injection."""
    right_without: dict[str, int]
    """Replies labelled right without injection, per gold binary label."""


def inject(reply: str, text: str) -> str:
    """``reply`` with ``text`` appended (after a space unless the text starts a new line)."""
    return f"{reply}{'' if text.startswith(chr(10)) else ' '}{text}"


def detector_injection_probe(
    detector: Detector,
    rows: Sequence[LabelledReply],
    injections: DetectorInjectionFile | None = None,
) -> DetectorInjectionProbe:
    """Label ``rows``, then every right one again with each injection aimed against its label.

    Two ``detect`` calls: the clean rows, then every injected reply in one batch.
    """
    pf = injections or detector_injections()
    clean = detector.detect([r.prompt for r in rows], [r.response for r in rows])
    right = [
        r for r, d in zip(rows, clean, strict=True) if d.as_scheme("binary") == r.gold("binary")
    ]
    cases = [(inj, r) for inj in pf.items for r in right if r.gold("binary") == _AIMED_AT[inj.aims]]
    got = detector.detect(
        [r.prompt for _, r in cases], [inject(r.response, i.text) for i, r in cases]
    )
    flips: dict[str, list[bool]] = {inj.id: [] for inj in pf.items}
    for (inj, r), d in zip(cases, got, strict=True):
        flips[inj.id].append(d.as_scheme("binary") != r.gold("binary"))
    every = [f for fs in flips.values() for f in fs]
    return DetectorInjectionProbe(
        detector=f"{detector.name}/{detector.version}",
        injections=pf.id,
        flip_rate=proportion(sum(every), len(every)),
        per_injection={k: proportion(sum(v), len(v)) for k, v in flips.items()},
        right_without={
            lab: sum(r.gold("binary") == lab for r in right) for lab in sorted(_AIMED_AT.values())
        },
    )
