"""Stakeholder panels: each stakeholder group judges a pair under its own principles.

Owns: running the feedback comparison once per stakeholder group (the constitution restricted to
that group's principles), aggregating the groups' verdicts (weighted mean, minimum so that no
group is harmed, or Borda count), disagreement between every two groups, and the resumable
panel stage writing ``panel_judgements.jsonl``, ``preferences.jsonl`` and ``panel_summary.json``.
Must not know: how one comparison is made (``label_preferences`` does it), or other workflows.

Verdicts are P(response A is better) per group. Aggregations, with group weights w_g:
- mean: sum w_g p_g / sum w_g.
- min: each response scores its worst group's support (min_g p_g for A, min_g (1 - p_g) for B);
  P(A) = score_A / (score_A + score_B), so A wins only when its worst-off group is better off.
- borda: each group ranks the two responses; the preferred one gets w_g points (half each on an
  exact tie); P(A) = A's points / all points.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Literal

from cai.backends import Backend
from cai.constitution import Constitution
from cai.errors import InputError
from cai.feedback._label import FeedbackConfig, label_preferences
from cai.records import Message, PairRecord, PreferenceRecord, Strict
from cai.scoring import Rate, proportion
from cai.store import JsonlWriter, write_json

Aggregation = Literal["mean", "min", "borda"]
AGGREGATIONS: tuple[str, ...] = ("mean", "min", "borda")


def aggregate(p: Mapping[str, float], weights: Mapping[str, float], method: str) -> float:
    """P(A better) from the groups' verdicts ``p`` (group -> P(A better))."""
    if not p:
        raise InputError("no group verdicts to aggregate")
    if method == "mean":
        total = sum(weights[g] for g in p)
        return sum(weights[g] * v for g, v in p.items()) / total
    if method == "min":
        a, b = min(p.values()), min(1 - v for v in p.values())
        return 0.5 if a + b == 0 else a / (a + b)
    if method == "borda":
        pts_a = sum(
            weights[g] * (1.0 if v > 0.5 else 0.5 if v == 0.5 else 0.0) for g, v in p.items()
        )
        return pts_a / sum(weights[g] for g in p)
    raise InputError(f"unknown aggregation {method!r}: choose one of {', '.join(AGGREGATIONS)}")


class PanelJudgement(Strict):
    """One pair judged by every stakeholder group that had principles for it."""

    version: Literal[1] = 1
    id: str
    """Pair id."""
    groups: dict[str, float]
    """Stakeholder group -> P(response A better) under that group's principles."""
    principles: dict[str, list[str]]
    """Stakeholder group -> principle ids it judged under."""
    method: Aggregation
    p_a: float
    """Aggregated P(response A better)."""
    outcome: Literal["preferred", "tie"]
    disagree: list[str]
    """'G1|G2' for every two groups that prefer different responses on this pair."""


class PanelSummary(Strict):
    """panel_summary.json."""

    version: Literal[1] = 1
    method: Aggregation
    groups: dict[str, float]
    """Stakeholder group -> weight."""
    pairs: int
    judged: int
    preferred: int
    ties: int
    failed: int
    disagreement: dict[str, Rate]
    """'G1|G2' -> share of pairs both judged on which they prefer different responses."""
    mean_abs_diff: dict[str, float]
    """'G1|G2' -> mean |p_G1 - p_G2| over pairs both judged."""
    constitution: str
    models: dict[str, str]
    seconds: float


def _side(p: float) -> int:
    return 1 if p > 0.5 else -1 if p < 0.5 else 0


def panel_judge(
    pairs: Sequence[PairRecord],
    constitution: Constitution,
    feedback: Sequence[Backend],
    config: FeedbackConfig | None = None,
    *,
    method: str = "mean",
) -> tuple[list[PanelJudgement], PanelSummary, list[PreferenceRecord]]:
    """Judge ``pairs`` once per stakeholder group and aggregate; preferences for clear winners."""
    if method not in AGGREGATIONS:
        raise InputError(f"unknown aggregation {method!r}: choose one of {', '.join(AGGREGATIONS)}")
    cfg = config or FeedbackConfig()
    start = time.perf_counter()
    weights: dict[str, float] = {}
    verdicts: dict[str, dict[str, float]] = {}
    used: dict[str, dict[str, list[str]]] = {}
    templates: set[str] = set()
    failed: set[str] = set()
    for s in constitution.stakeholders:
        if not any(p.stakeholder == s.id for p in constitution.principles):
            continue
        sub = constitution.for_stakeholder(s.id)
        mine = [p for p in pairs if sub.applicable(kind=p.prompt.kind)]
        if not mine:
            continue
        weights[s.id] = s.weight
        res = label_preferences(mine, sub, feedback, cfg)
        failed.update(f.record_id for f in res.failures)
        for j in res.judgements:
            verdicts.setdefault(j.id, {})[s.id] = j.soft_label_a
            used.setdefault(j.id, {})[s.id] = list(
                dict.fromkeys(c.principle_id for c in j.comparisons)
            )
            templates.add(j.template_version)
    judgements: list[PanelJudgement] = []
    prefs: list[PreferenceRecord] = []
    by_id = {p.id: p for p in pairs}
    for pid, groups in verdicts.items():
        if pid in failed:
            continue  # retried on the next run, with every group
        p_a = aggregate(groups, weights, method)
        tie = abs(p_a - 0.5) < cfg.min_confidence
        judgements.append(
            PanelJudgement(
                id=pid,
                groups=groups,
                principles=used[pid],
                method=method,
                p_a=round(p_a, 6),
                outcome="tie" if tie else "preferred",
                disagree=[
                    f"{g}|{h}"
                    for g, h in combinations(sorted(groups), 2)
                    if _side(groups[g]) * _side(groups[h]) < 0
                ],
            )
        )
        if not tie:
            pair = by_id[pid]
            a_wins = p_a > 0.5
            win, lose = (pair.response_a, pair.response_b)[:: 1 if a_wins else -1]
            prefs.append(
                PreferenceRecord(
                    id=pid,
                    prompt=[Message(role="user", content=pair.prompt.text)],
                    chosen=[Message(role="assistant", content=win)],
                    rejected=[Message(role="assistant", content=lose)],
                    soft_label=p_a if a_wins else 1 - p_a,
                    margin=0.0,  # no single log-probability margin behind an aggregate
                    principle_ids=list(dict.fromkeys(x for ids in used[pid].values() for x in ids)),
                    models={
                        "policy": pair.models.get("policy", "unknown"),
                        "feedback": ",".join(b.spec for b in feedback),
                    },
                    template_version=f"{','.join(sorted(templates))}+panel:{method}",
                    seed=cfg.seed,
                )
            )
    summary = PanelSummary(
        method=method,
        groups=weights,
        pairs=len(pairs),
        judged=len(judgements),
        preferred=len(prefs),
        ties=len(judgements) - len(prefs),
        failed=len(failed),
        disagreement=disagreement(judgements),
        mean_abs_diff=_mean_abs_diff(judgements),
        constitution=constitution.label(),
        models={"feedback": ",".join(b.spec for b in feedback)},
        seconds=round(time.perf_counter() - start, 3),
    )
    return judgements, summary, prefs


def _both(judgements: Sequence[PanelJudgement]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for j in judgements:
        for g, h in combinations(sorted(j.groups), 2):
            out.setdefault(f"{g}|{h}", []).append((j.groups[g], j.groups[h]))
    return out


def disagreement(judgements: Sequence[PanelJudgement]) -> dict[str, Rate]:
    """Per two groups: share of the pairs both judged on which they prefer different responses."""
    return {
        key: proportion(sum(_side(a) * _side(b) < 0 for a, b in vals), len(vals))
        for key, vals in sorted(_both(judgements).items())
    }


def _mean_abs_diff(judgements: Sequence[PanelJudgement]) -> dict[str, float]:
    return {
        key: round(sum(abs(a - b) for a, b in vals) / len(vals), 6)
        for key, vals in sorted(_both(judgements).items())
    }


def run_panel_stage(
    pairs: Sequence[PairRecord],
    constitution: Constitution,
    feedback: Sequence[Backend],
    out_dir: str | Path,
    config: FeedbackConfig | None = None,
    *,
    method: str = "mean",
) -> PanelSummary:
    """Resumable: skips pairs already in ``panel_judgements.jsonl``; appends preferences."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (
        JsonlWriter(out / "panel_judgements.jsonl", PanelJudgement) as jw,
        JsonlWriter(out / "preferences.jsonl", PreferenceRecord) as pw,
    ):
        todo = [
            p for p in pairs if p.id not in jw.done and p.response_a.strip() != p.response_b.strip()
        ]
        judgements, summary, prefs = panel_judge(
            todo, constitution, feedback, config, method=method
        )
        for j in judgements:
            jw.write(j)
        for pr in prefs:
            if pr.id not in pw.done:
                pw.write(pr)
    write_json(out / "panel_summary.json", summary)
    return summary
