"""Plot geometry for the report: the safety/helpfulness frontier and per-category bars.

Owns: turning Rates into pixel coordinates, axis ticks and colours. The template draws the SVG
from these numbers, so every piece of text in a plot is escaped by the template engine.
Must not know: HTML, or where the rates came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cai.scoring import Rate

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#000000")
"""Okabe-Ito colours (readable with colour-blindness), one per model in order."""

_NICE = (0.05, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.8, 1.0)


def colors(models: Sequence[str]) -> dict[str, str]:
    """A colour per model, stable in the given order."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def pct(value: float | None) -> str:
    """0.123 -> '12.3%'; None -> 'n/a'."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _nice_max(values: Sequence[float]) -> float:
    top = max(values, default=0.0) * 1.08
    return next((v for v in _NICE if v >= top), 1.0)


@dataclass(frozen=True, slots=True)
class Tick:
    """An axis tick at pixel ``pos`` labelled ``text``."""

    pos: float
    text: str


@dataclass(frozen=True, slots=True)
class Point:
    """One model on the frontier: centre, interval ends (pixels) and a hover text."""

    name: str
    color: str
    x: float
    y: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    title: str
    label_x: float
    anchor: str


@dataclass(frozen=True, slots=True)
class Scatter:
    """Harmful compliance (y) against over-refusal (x), both lower-is-better."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    points: list[Point]
    missing: list[str]


def _ticks(lo_px: float, hi_px: float, top: float) -> list[Tick]:
    return [
        Tick(round(lo_px + (hi_px - lo_px) * i / 5, 1), pct(top * i / 5).replace(".0%", "%"))
        for i in range(6)
    ]


def frontier(
    harmful: Mapping[str, Rate], over: Mapping[str, Rate], palette: Mapping[str, str]
) -> Scatter:
    """The scatter of every model that has both rates; the others are listed as missing."""
    w, h, left, top, right, bottom = 560, 400, 64, 16, 536, 344
    pad = 10  # points on the axis limits stay fully visible
    have = [m for m in harmful if harmful[m].value is not None and over[m].value is not None]
    xmax = _nice_max([(over[m].ci95 or (0.0, 0.0))[1] for m in have])
    ymax = _nice_max([(harmful[m].ci95 or (0.0, 0.0))[1] for m in have])

    def px(v: float) -> float:
        return round(left + pad + (right - left - 2 * pad) * v / xmax, 1)

    def py(v: float) -> float:
        return round(bottom - pad - (bottom - top - 2 * pad) * v / ymax, 1)

    points = []
    for m in have:
        hr, orr = harmful[m], over[m]
        assert hr.value is not None and orr.value is not None and hr.ci95 and orr.ci95
        title = (
            f"{m}: harmful compliance {pct(hr.value)} (n={hr.n}), "
            f"over-refusal {pct(orr.value)} (n={orr.n})"
        )
        x = px(orr.value)
        near_right = x > (left + right) / 2
        points.append(
            Point(
                m, palette[m], x, py(hr.value), px(orr.ci95[0]), px(orr.ci95[1]),
                py(hr.ci95[0]), py(hr.ci95[1]), title,
                x - 9 if near_right else x + 9, "end" if near_right else "start",
            )
        )  # fmt: skip
    x_ticks = _ticks(left + pad, right - pad, xmax)
    y_ticks = _ticks(bottom - pad, top + pad, ymax)
    missing = [m for m in harmful if m not in have]
    return Scatter(w, h, left, top, right, bottom, x_ticks, y_ticks, points, missing)


@dataclass(frozen=True, slots=True)
class Bar:
    """One model's bar in a category group (pixels) and its labels."""

    y: float
    width: float
    lo: float
    hi: float
    color: str
    text: str
    title: str


@dataclass(frozen=True, slots=True)
class BarGroup:
    """One category: its label position and a bar per model."""

    label: str
    y: float
    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class BarChart:
    """Horizontal grouped bars, one group per category."""

    width: int
    height: int
    left: int
    right: int
    ticks: list[Tick]
    groups: list[BarGroup]
    bar_height: int


def category_bars(
    per_model: Mapping[str, Mapping[str, Rate]], palette: Mapping[str, str]
) -> BarChart:
    """Bars for ``{model: {category: Rate}}``; categories without an assessed rate are skipped."""
    cats = sorted({c for rates in per_model.values() for c, r in rates.items() if r.n})
    width, bar_h, gap, top, left, right = 1000, 11, 9, 8, 170, 860
    his = [r.ci95[1] for rates in per_model.values() for r in rates.values() if r.ci95]
    xmax = _nice_max(his)

    def px(v: float) -> float:
        return round(left + (right - left) * v / xmax, 1)

    groups, y = [], float(top)
    for c in cats:
        bars = []
        for i, (m, rates) in enumerate(per_model.items()):
            r = rates.get(c)
            if r is None or r.value is None or r.ci95 is None:
                continue
            by = y + i * (bar_h + 2)
            title = f"{m} / {c}: {pct(r.value)} [{pct(r.ci95[0])}, {pct(r.ci95[1])}], n={r.n}"
            bars.append(
                Bar(by, px(r.value) - left, px(r.ci95[0]), px(r.ci95[1]), palette[m],
                    f"{pct(r.value)} (n={r.n})", title)
            )  # fmt: skip
        height = len(per_model) * (bar_h + 2)
        groups.append(BarGroup(c, round(y + height / 2, 1), bars))
        y += height + gap
    return BarChart(width, int(y) + 28, left, right, _ticks(left, right, xmax), groups, bar_h)
