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
    """FNV-1a 32-bit over code points, as growthbook-python < 4 computed it (hash versions 1 and 2)."""
    h = _FNV_OFFSET
    for ch in text:
        h = ((h ^ ord(ch)) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def fnv1a32_utf16(text: str) -> int:
    """FNV-1a 32-bit over UTF-16 code units, as GrowthBook's JS SDK and growthbook-python 4.x compute it.

    Identical to `fnv1a32` for text inside the Basic Multilingual Plane; a character above U+FFFF
    counts as its two surrogates. A lone surrogate (which JS strings can hold) is one code unit.
    """
    if text.isascii():  # the common case: one code unit per character
        return fnv1a32(text)
    data = text.encode("utf-16-le", "surrogatepass")
    h = _FNV_OFFSET
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | data[i + 1] << 8)) * _FNV_PRIME) & 0xFFFFFFFF
    return h


HASH_VERSIONS = (1, 2, 3)


def hash_unit(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's `hash(seed, value, version)`: a float in [0, 1), or None for unknown versions.

    Versions 1 and 2 hash code points (what abgate always did, so running experiments keep their
    buckets); version 3 is GrowthBook's version-2 algorithm over UTF-16 code units, i.e. exactly what
    the JS SDK and growthbook-python 4.x return for `hash(seed, value, 2)` for every string, including
    emoji and CJK-extension ids. Inside the BMP versions 2 and 3 agree.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 3:
        return (fnv1a32(str(fnv1a32_utf16(seed + value))) % 10000) / 10000
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
