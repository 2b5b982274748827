"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network).

Owns: the view of the metrics (table, the second detector's cross-check, frontier plot,
per-category bars, ASI bars per shift family with over-refusal under the same shifts, the judge
calibration table, example replies, provenance) and rendering it through
``templates/report.html.j2`` with autoescaping on, so every model reply, prompt and name is
HTML-escaped.
Must not know: how metrics are computed or where the files go.

``extra_sections`` lets the pipeline add its own parts (position bias, SL-CAI examples...) as
(title, HTML) pairs. The title is escaped here; the HTML is inserted as given, so the caller
must escape any model text in it (``markupsafe.escape`` or a jinja2 template with autoescape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cai.errors import MissingDependencyError
from cai.evaluate._calibrate import CalibrationFile
from cai.evaluate._plots import category_bars, colors, frontier, pct
from cai.evaluate._schema import MetricsFile, ModelMetrics, ResponseRecord
from cai.scoring import Rate, Validation

_LABEL_CLASS = {
    "full_compliance": "comply",
    "partial_refusal": "partial",
    "full_refusal": "refuse",
    "undetermined": "unknown",
}


@dataclass(frozen=True, slots=True)
class Cell:
    """A rate as shown in the table."""

    value: str
    detail: tuple[str, ...]


def _cell(rate: Rate | None, missing: str = "not computed") -> Cell:
    if rate is None:
        return Cell("—", (missing,))
    if rate.value is None or rate.ci95 is None:
        return Cell("n/a", ("n=0",))
    lo, hi = rate.ci95
    return Cell(pct(rate.value), (f"95% CI {100 * lo:.1f}–{pct(hi)}", f"n={rate.n}"))


def _unassessed(m: ModelMetrics) -> str:
    parts = []
    for metric, u in m.unassessed.items():
        if u.errored or u.undetermined:
            bits = [f"{u.errored} errored"] * bool(u.errored)
            bits += [f"{u.undetermined} undetermined"] * bool(u.undetermined)
            parts.append(f"{metric}: {', '.join(bits)}")
    return "; ".join(parts) or "none"


def _with_note(
    cell: Cell, calibration: CalibrationFile | None, validation: Validation | None = None
) -> Cell:
    if cell.value in ("—", "n/a"):
        return cell
    if validation is not None and not validation.validated:  # never shown as a plain result
        return Cell("judge not validated", (f"value {cell.value}", *cell.detail, validation.reason))
    return Cell(cell.value, cell.detail + _judge_note(calibration))


def _judge_note(c: CalibrationFile | None) -> tuple[str, ...]:
    """The line shown under every judge-produced number when the judge was calibrated."""
    if c is None or c.accuracy.value is None:
        return ()
    return (
        f"judge agrees with people {pct(c.accuracy.value)} (n={c.accuracy.n}; see calibration)",
    )


def _rows(
    metrics: MetricsFile, palette: dict[str, str], calibration: CalibrationFile | None = None
) -> list[dict[str, Any]]:
    rows = []
    for name, m in metrics.models.items():
        win_missing = "baseline" if name == metrics.meta.baseline else "not computed"
        asi = m.asi
        asi_cell = Cell("—", ("not computed (--asi)",))
        if asi.value is not None and asi.ci95 is not None:
            lo, hi = asi.ci95
            asi_cell = Cell(f"{asi.value:.2f}", (f"95% CI {lo:.2f}–{hi:.2f}", f"n={asi.n}",
                                                 f"worst: {asi.worst_family}"))  # fmt: skip
        rows.append(
            {
                "name": name,
                "spec": metrics.meta.models.get(name, ""),
                "color": palette[name],
                "harmful": _cell(m.harmful_compliance),
                "over": _cell(m.over_refusal),
                "answered": _cell(m.helpful_answered, "no helpful suite"),
                "win": _with_note(
                    _cell(m.helpfulness_win_rate, win_missing),
                    calibration,
                    m.helpfulness_win_rate_validation,
                ),
                "asi": asi_cell,
                "unassessed": _unassessed(m),
                "labels": m.labels,
            }
        )  # fmt: skip
    return rows


def _cross_rows(metrics: MetricsFile) -> list[dict[str, Any]]:
    """Per model: each refusal metric by the main and by the second detector, and agreement."""
    rows = []
    for name, m in metrics.models.items():
        c = m.cross_check
        if c is None:
            continue
        pairs = [
            ("Harmful compliance ↓", m.harmful_compliance, c.harmful_compliance),
            ("Over-refusal ↓", m.over_refusal, c.over_refusal),
            ("Helpful answered ↑", m.helpful_answered, c.helpful_answered),
        ]
        rows.append(
            {
                "name": name,
                "detector": f"{c.detector} v{c.version}",
                "metrics": [(label, _ci(a), _ci(b)) for label, a, b in pairs],
                "agreement": _ci(c.agreement),
            }
        )
    return rows


def _examples(examples: Sequence[ResponseRecord], palette: dict[str, str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in examples:
        g = groups.setdefault(
            (r.suite, r.prompt_id),
            {"suite": r.suite, "kind": r.kind, "category": r.category, "prompt": r.prompt,
             "id": r.prompt_id, "replies": []},
        )  # fmt: skip
        d = r.detection
        g["replies"].append(
            {
                "model": r.model,
                "color": palette.get(r.model, "#7F7F7F"),
                "label": d.label if d else "errored",
                "css": _LABEL_CLASS[d.label] if d else "error",
                "why": f"{d.reason} (confidence {d.confidence:.2f})" if d else (r.error or ""),
                "text": r.response,
                "finish": r.finish_reason,
            }
        )
    order = {"harmful": 0, "borderline": 1, "helpful": 2}
    return sorted(groups.values(), key=lambda g: (order.get(g["kind"], 3), g["suite"], g["id"]))


@lru_cache(maxsize=1)
def _template() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError(
            "the HTML report needs the 'jinja2' package: pip install jinja2"
        ) from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cai.evaluate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def _ci(rate: Rate | None, percent: bool = True) -> tuple[str, str, str]:
    """(value, interval, n) texts of a rate; percentages unless ``percent`` is False."""
    if rate is None or rate.value is None or rate.ci95 is None:
        return ("n/a", "", "0")
    lo, hi = rate.ci95
    if percent:
        return (pct(rate.value), f"{pct(lo)} – {pct(hi)}", str(rate.n))
    return (f"{rate.value:.2f}", f"{lo:.2f} – {hi:.2f}", str(rate.n))


def _calibration_rows(c: CalibrationFile) -> list[tuple[str, tuple[str, str, str], str]]:
    rows = [
        (
            "Agreement with people (accuracy)",
            _ci(c.accuracy),
            "share of items judged as people did",
        ),
        ("Cohen's kappa", _ci(c.kappa, percent=False), "0 = chance level, 1 = perfect"),
        ("Position bias (slot A wins)", _ci(c.position_bias), "50% is unbiased"),
        ("Order consistency", _ci(c.order_consistency), "both orders pick the same reply"),
    ]
    if c.length_bias is not None:
        rows += [
            ("Judge prefers the longer reply", _ci(c.length_bias.judge_prefers_longer),
             "pairs of unequal length"),
            ("People prefer the longer reply", _ci(c.length_bias.humans_prefer_longer),
             "the same pairs"),
        ]  # fmt: skip
    if c.hedge_probe is not None:
        rows.append(
            ("Prefers a hedged harmful answer", _ci(c.hedge_probe.prefers_hedged),
             f"over a plain refusal ({c.hedge_probe.probe}); lower is better")
        )  # fmt: skip
    return rows


def _asi_view(metrics: MetricsFile, palette: dict[str, str]) -> dict[str, Any]:
    models = {n: m.asi for n, m in metrics.models.items() if m.asi.per_shift}
    rows = []
    for name, a in models.items():
        for fam, sf in a.per_shift.items():
            rows.append(
                {
                    "model": name,
                    "family": fam,
                    "s_f": _ci(sf),
                    "ratio": _ci(a.ratio.get(fam), False),
                    "over": _ci(a.over_refusal.get(fam)),
                    "s0": _ci(a.s0),
                }
            )
    return {
        "present": bool(models),
        "ratio_bars": category_bars({n: a.ratio for n, a in models.items()}, palette),
        "over_bars": category_bars({n: a.over_refusal for n, a in models.items()}, palette),
        "rows": rows,
    }


def render_report(
    metrics: MetricsFile,
    examples: Sequence[ResponseRecord],
    extra_sections: Sequence[tuple[str, str]] = (),
    calibration: CalibrationFile | None = None,
) -> str:
    """The report as one HTML string. ``extra_sections`` HTML must already be escaped.

    ``calibration`` (calibration.json of ``cai calibrate``) adds the judge calibration table
    next to the metrics the judge produced.
    """
    template = _template()  # first: it says how to install jinja2 (and markupsafe with it)
    from markupsafe import Markup

    palette = colors(list(metrics.models))
    harmful = {n: m.harmful_compliance for n, m in metrics.models.items()}
    over = {n: m.over_refusal for n, m in metrics.models.items()}
    per_cat = {n: m.per_category for n, m in metrics.models.items()}
    meta = metrics.meta
    return str(
        template.render(
            meta=meta,
            generation=meta.generation.model_dump(mode="json"),
            rows=_rows(metrics, palette, calibration),
            cross_rows=_cross_rows(metrics),
            legend=[(n, palette[n]) for n in metrics.models],
            scatter=frontier(harmful, over, palette),
            harmful_bars=category_bars(
                {n: c.harmful_compliance for n, c in per_cat.items()}, palette
            ),
            safe_bars=category_bars({n: c.over_refusal for n, c in per_cat.items()}, palette),
            win_bars=category_bars(
                {n: c.helpfulness_win_rate for n, c in per_cat.items() if c.helpfulness_win_rate},
                palette,
            ),
            examples=_examples(examples, palette),
            extra=[(title, Markup(html)) for title, html in extra_sections],
            calibration=calibration,
            calibration_rows=_calibration_rows(calibration) if calibration else [],
            asi=_asi_view(metrics, palette),
        )
    )
