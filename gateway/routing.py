"""GrowthBook-compatible bucketing: the same unit gets the same arm as GrowthBook's SDKs.

Mirrors growthbook-python's `gbhash`, `getBucketRanges` and `chooseVariation`.
One deliberate difference: weights that do not match the arm count or do not sum
to 1 raise `ValueError` instead of silently falling back to equal weights.
"""

from __future__ import annotations

from collections.abc import Sequence

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_WEIGHT_TOLERANCE = 1e-6


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit over code points, as growthbook-python computes it."""
    h = _FNV_OFFSET
    for ch in text:
        h = ((h ^ ord(ch)) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def hash_unit(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's `hash(seed, value, version)`: a float in [0, 1), or None for unknown versions."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def check_weights(num_arms: int, weights: Sequence[float]) -> None:
    """Reject weights GrowthBook would silently replace with equal weights."""
    if len(weights) != num_arms:
        raise ValueError(f"{len(weights)} weights given for {num_arms} arms")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")
    total = sum(weights)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"weights must sum to 1 (within 1e-6), got {total:.9g}")


def bucket_ranges(
    num_arms: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """GrowthBook's `getBucketRanges`: coverage is clamped to [0, 1]; weights default to equal."""
    coverage = min(max(coverage, 0.0), 1.0)
    if weights is None:
        weights = [1.0 / num_arms] * num_arms if num_arms > 0 else []
    check_weights(num_arms, weights)
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_arm(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """GrowthBook's `chooseVariation`: index of the range holding n, or -1."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= n < hi:
            return i
    return -1


def promoted_weights(weights: Sequence[float], index: int, weight: float) -> list[float]:
    """Arm `index` gets `weight`; the other arms share the rest in proportion to their current
    weights, or all of it goes to the first other arm (normally control) when they are all 0.
    The result sums to exactly 1, so the config's weight check always passes."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be within [0, 1], got {weight}")
    others = [i for i in range(len(weights)) if i != index]
    rest = 1.0 - weight
    total = sum(weights[i] for i in others)
    out = [0.0] * len(weights)
    out[index] = weight
    for i in others:
        out[i] = rest * weights[i] / total if total > 1e-9 else 0.0
    if others:
        if total <= 1e-9:
            out[others[0]] = rest
        j = max(others, key=lambda i: out[i])  # absorb float rounding
        out[j] += 1.0 - sum(out)
    return [round(w, 12) for w in out]
