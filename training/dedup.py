"""Exact and near-duplicate detection (MinHash + LSH), and the leak-free deterministic split.

Near-duplicates are judged on word 3-gram shingles (character 5-grams for very short
texts) with 128-permutation MinHash; LSH proposes candidates and the MinHash Jaccard
estimate confirms them against the threshold.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:  # datasketch pulls in scipy (about 1 s): imported on first use, not by `abgate serve`
    import numpy as np
    from datasketch import MinHash

NUM_PERM = 128
_WORD = re.compile(r"\w+", re.UNICODE)


@functools.cache
def _permutations() -> np.ndarray:
    """Drawing the permutations is most of a MinHash's construction cost; every sketch uses the
    same seed, so draw them once (read-only) and share them (same values as MinHash(seed=1))."""
    from datasketch import MinHash

    perms: np.ndarray = MinHash(num_perm=NUM_PERM, seed=1).permutations
    perms.flags.writeable = False
    return perms


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()


def shingles(text: str) -> set[bytes]:
    words = normalize(text).split()
    if len(words) >= 6:
        return {" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)}
    flat = " ".join(words)
    if len(flat) < 5:
        return {flat.encode()}
    return {flat[i : i + 5].encode() for i in range(len(flat) - 4)}


def minhash(text: str) -> MinHash:
    from datasketch import MinHash

    m = MinHash(num_perm=NUM_PERM, seed=1, permutations=_permutations(), scheme="affine32")
    m.update_batch(list(shingles(text)))
    return m


def sketches(texts: Sequence[str]) -> list[MinHash]:
    """One MinHash per text; callers pass them to the functions below so none is computed twice."""
    return [minhash(t) for t in texts]


def near_duplicate_pairs(
    texts: Sequence[str], threshold: float, hashes: Sequence[MinHash] | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j for every pair at or above `threshold` (exact duplicates included)."""
    if len(texts) < 2:
        return []
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    hashes = sketches(texts) if hashes is None else hashes
    pairs: list[tuple[int, int, float]] = []
    for j, h in enumerate(hashes):
        for i in sorted(int(k) for k in lsh.query(h)):
            sim = hashes[i].jaccard(h)
            if sim >= threshold:
                pairs.append((i, j, sim))
        lsh.insert(str(j), h)
    return pairs


class Duplicate(TypedDict):
    """One removed text: `index` duplicates the kept text `duplicate_of`."""

    index: int
    duplicate_of: int
    kind: Literal["exact", "near"]
    similarity: float


def remove_duplicates(
    texts: Sequence[str], threshold: float | None, hashes: Sequence[MinHash] | None = None
) -> tuple[list[int], list[Duplicate]]:
    """Keep the first of every duplicate group (callers order by preference).

    Returns (kept indices, removed: [{index, duplicate_of, kind: exact|near, similarity}]).
    `hashes`, when given, are the texts' precomputed `sketches`.
    """
    kept: list[int] = []
    removed: list[Duplicate] = []
    by_exact: dict[str, int] = {}
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if threshold else None
    indexed: dict[int, MinHash] = {}
    for i, text in enumerate(texts):
        key = exact_key(text)
        if key in by_exact:
            removed.append({"index": i, "duplicate_of": by_exact[key], "kind": "exact", "similarity": 1.0})
            continue
        if lsh is not None:
            h = hashes[i] if hashes is not None else minhash(text)
            best: tuple[float, int] | None = None
            for k in lsh.query(h):
                sim = indexed[int(k)].jaccard(h)
                if sim >= (threshold or 1.0) and (best is None or sim > best[0]):
                    best = (sim, int(k))
            if best is not None:
                removed.append({"index": i, "duplicate_of": best[1], "kind": "near", "similarity": round(best[0], 4)})
                continue
            lsh.insert(str(i), h)
            indexed[i] = h
        by_exact[key] = i
        kept.append(i)
    return kept, removed


def clusters(texts: Sequence[str], threshold: float, hashes: Sequence[MinHash] | None = None) -> list[list[int]]:
    """Connected groups of near-duplicates (union-find over the LSH pairs); singletons included."""
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in near_duplicate_pairs(texts, threshold, hashes):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def split(
    texts: Sequence[str],
    fractions: dict[str, float],
    *,
    seed: str = "abgate",
    threshold: float = 0.5,
    hashes: Sequence[MinHash] | None = None,
) -> list[str]:
    """Assign each text a split name; a near-duplicate cluster always lands in one split.

    Deterministic: clusters are ordered by a seeded hash of their content, then each goes to
    the split furthest below its target share (so shares are as exact as clusters allow).
    """
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError("split fractions must be >= 0 and not all zero")
    names = [k for k, v in fractions.items() if v > 0]
    groups = clusters(texts, threshold, hashes)
    order = sorted(
        groups,
        key=lambda g: hashlib.sha256((seed + "\x00" + min(exact_key(texts[i]) for i in g)).encode()).hexdigest(),
    )
    counts = dict.fromkeys(names, 0)
    out = [""] * len(texts)
    assigned = 0
    for g in order:
        after = assigned + len(g)
        # the split whose count is furthest below its target once this cluster is placed
        name = max(names, key=lambda k: (fractions[k] / total * after - counts[k], fractions[k], -names.index(k)))
        for i in g:
            out[i] = name
        counts[name] += len(g)
        assigned = after
    return out
