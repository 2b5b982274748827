"""Rates with 95% intervals: the one shape every metric in metrics.json takes.

Owns: the ``Rate`` record (``{"value", "n", "ci95"}``, as DESIGN.md fixes it), the Wilson score
interval for proportions and the percentile bootstrap for means of per-item scores.
Must not know: what is being counted.

A rate over nothing (n == 0) has ``value`` and ``ci95`` set to None (JSON null) rather than NaN,
so metrics.json stays strict JSON and nobody averages a missing number by accident.
numpy is imported lazily, only by the bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from cai.errors import MissingDependencyError
from cai.records import Strict

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Stat = Callable[[NDArray[np.float64]], float]
else:
    Stat = Callable[[Any], float]

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal."""
_DIGITS = 6
"""Rates are stored rounded to 6 decimals: more is noise next to any interval width."""


class Rate(Strict):
    """A share or mean with its sample size and 95% interval."""

    value: float | None
    """The estimate; None when n is 0."""
    n: int = Field(ge=0)
    """Items the estimate is over (unassessed items excluded)."""
    ci95: tuple[float, float] | None
    """Lower and upper end of the 95% interval; None when n is 0."""

    @model_validator(mode="after")
    def _consistent(self) -> Rate:
        if (self.n == 0) != (self.value is None):
            raise ValueError("value must be None exactly when n is 0")
        if self.ci95 is not None and self.ci95[0] > self.ci95[1]:
            raise ValueError("ci95 must be [lo, hi] with lo <= hi")
        return self

    @classmethod
    def empty(cls) -> Rate:
        """The rate over no items."""
        return cls(value=None, n=0, ci95=None)

    def fmt(self, *, percent: bool = False, digits: int | None = None) -> str:
        """'0.913 [0.838, 0.955] n=92' (``percent``: '91.3% [83.8, 95.5] n=92'), or 'n/a (n=0)'."""
        if self.value is None or self.ci95 is None:
            return "n/a (n=0)"
        k, unit = (100, "%") if percent else (1, "")
        d = digits if digits is not None else (1 if percent else 3)
        lo, hi = self.ci95
        return f"{k * self.value:.{d}f}{unit} [{k * lo:.{d}f}, {k * hi:.{d}f}] n={self.n}"


def wilson_interval(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` trials (n >= 1).

    ``k`` may be fractional: a tie counted as half a success.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends: no 1e-18 from rounding
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def proportion(k: float, n: int) -> Rate:
    """``k`` of ``n`` as a Rate with the Wilson 95% interval."""
    if n == 0:
        return Rate.empty()
    lo, hi = wilson_interval(k, n)
    return Rate(value=round(k / n, _DIGITS), n=n, ci95=(round(lo, _DIGITS), round(hi, _DIGITS)))


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise MissingDependencyError(
            "bootstrap intervals need the 'numpy' package: pip install numpy"
        ) from None
    return numpy


def bootstrap_ci(
    values: Sequence[float],
    stat: Stat | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default: the mean) over ``values``.

    Resamples ``values`` with replacement ``n_boot`` times from a seeded generator, so the same
    inputs always give the same interval. Needs at least one value.
    """
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    np = _numpy()
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(n_boot, len(data)))  # (n_boot, n)
    if stat is None:
        stats = data[idx].mean(axis=1)  # (n_boot,)
    else:
        stats = np.array([stat(data[row]) for row in idx], dtype=np.float64)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_rate(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> Rate:
    """The mean of per-item scores as a Rate with a percentile-bootstrap 95% interval."""
    if not values:
        return Rate.empty()
    lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    mean = math.fsum(values) / len(values)
    ci = (round(min(lo, mean), _DIGITS), round(max(hi, mean), _DIGITS))
    return Rate(value=round(mean, _DIGITS), n=len(values), ci95=ci)


def decision_rate(decisions: Sequence[bool | None], *, n_boot: int = 2000, seed: int = 0) -> Rate:
    """Win rate from per-item decisions (True win, False loss, None undecided), resampling items.

    The value counts an undecided item half. The interval bounds what undecided items could be:
    its lower end is the bootstrap 2.5% quantile of the share counting every undecided item a
    loss, its upper end the 97.5% quantile counting each a win. A judge that decides nothing
    gets [0, 1], never a narrow interval around 0.5.
    """
    if not decisions:
        return Rate.empty()
    np = _numpy()
    wins = np.array([d is True for d in decisions], dtype=np.float64)
    undecided = np.array([d is None for d in decisions], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wins), size=(n_boot, len(wins)))
    low = wins[idx].mean(axis=1)
    high = (wins + undecided)[idx].mean(axis=1)
    value = float(wins.mean() + 0.5 * undecided.mean())
    lo = min(float(np.quantile(low, 0.025)), value)
    hi = max(float(np.quantile(high, 0.975)), value)
    return Rate(
        value=round(value, _DIGITS), n=len(decisions), ci95=(round(lo, _DIGITS), round(hi, _DIGITS))
    )


def _kappa_from_codes(codes: NDArray[np.float64]) -> float:
    """Cohen's kappa of binary pairs coded as 2 * a + b (a, b in {0, 1})."""
    n = len(codes)
    a = codes >= 2  # first rater said 1
    b = (codes % 2) == 1  # second rater said 1
    observed = float((a == b).sum()) / n
    pa, pb = float(a.sum()) / n, float(b.sum()) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:  # both raters constant: kappa is undefined; 0 means "no skill shown"
        return 0.0
    return (observed - expected) / (1 - expected)


def cohen_kappa(
    first: Sequence[bool], second: Sequence[bool], *, n_boot: int = 2000, seed: int = 0
) -> Rate:
    """Cohen's kappa between two binary raters, with a percentile-bootstrap 95% interval.

    Pairs are resampled together. When one rater gives a single answer throughout, chance
    agreement already explains everything it says and kappa is reported as 0 (not NaN).
    """
    if len(first) != len(second):
        raise ValueError("cohen_kappa needs two sequences of the same length")
    if not first:
        return Rate.empty()
    np = _numpy()
    codes = [2.0 * bool(a) + bool(b) for a, b in zip(first, second, strict=True)]
    value = _kappa_from_codes(np.asarray(codes, dtype=np.float64))
    lo, hi = bootstrap_ci(codes, _kappa_from_codes, n_boot=n_boot, seed=seed)
    ci = (round(min(lo, value), _DIGITS), round(max(hi, value), _DIGITS))
    return Rate(value=round(value, _DIGITS), n=len(codes), ci95=ci)
