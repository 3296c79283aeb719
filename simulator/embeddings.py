"""`POST /v1/embeddings`: deterministic hashed bag-of-words vectors, so similar texts are close."""

from __future__ import annotations

import hashlib
import math
import re

DIM = 256
_WORD = re.compile(r"\w+", re.UNICODE)


def _bucket(token: str) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest())
    return h % DIM, 1.0 if (h >> 32) & 1 else -1.0


def embed(text: str, dim: int = DIM) -> list[float]:
    """Unit vector of signed hashed unigram + bigram counts (the feature-hashing trick)."""
    words = [w.lower() for w in _WORD.findall(text)]
    vec = [0.0] * DIM
    for tok in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
        i, sign = _bucket(tok)
        vec[i] += sign
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0:
        vec[0], norm = 1.0, 1.0  # empty text: a fixed unit vector rather than NaNs
    if 0 < dim < DIM:  # OpenAI's `dimensions`: shorten, then renormalise
        vec = vec[:dim]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))
