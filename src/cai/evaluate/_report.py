"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network).

Owns: the view of the metrics (table, frontier plot, per-category bars, example replies,
provenance) and rendering it through ``templates/report.html.j2`` with autoescaping on, so every
model reply, prompt and name is HTML-escaped.
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
from cai.evaluate._plots import category_bars, colors, frontier, pct
from cai.evaluate._schema import MetricsFile, ModelMetrics, ResponseRecord
from cai.scoring import Rate

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


def _rows(metrics: MetricsFile, palette: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, m in metrics.models.items():
        win_missing = "baseline" if name == metrics.meta.baseline else "not computed"
        rows.append(
            {
                "name": name,
                "spec": metrics.meta.models.get(name, ""),
                "color": palette[name],
                "harmful": _cell(m.harmful_compliance),
                "over": _cell(m.over_refusal),
                "win": _cell(m.helpfulness_win_rate, win_missing),
                "asi": Cell("—", ("not computed",)) if m.asi.value is None else _cell(
                    Rate(value=m.asi.value, n=m.asi.n, ci95=m.asi.ci95)
                ),
                "unassessed": _unassessed(m),
                "labels": m.labels,
            }
        )  # fmt: skip
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


def render_report(
    metrics: MetricsFile,
    examples: Sequence[ResponseRecord],
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report as one HTML string. ``extra_sections`` HTML must already be escaped."""
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
            rows=_rows(metrics, palette),
            legend=[(n, palette[n]) for n in metrics.models],
            scatter=frontier(harmful, over, palette),
            harmful_bars=category_bars(
                {n: c.harmful_compliance for n, c in per_cat.items()}, palette
            ),
            safe_bars=category_bars({n: c.over_refusal for n, c in per_cat.items()}, palette),
            examples=_examples(examples, palette),
            extra=[(title, Markup(html)) for title, html in extra_sections],
        )
    )
