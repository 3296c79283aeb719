"""Small numeric helpers shared by the harness (kept dependency-free and unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either side is missing or b is zero (a run that was skipped or failed)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (memory growth per second in the soak)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need two or more (x, y) points of equal length")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        raise ValueError("all x values are equal")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
