"""Chat `logprobs` / `top_logprobs` and Responses `include: [message.output_text.logprobs]`.

Tokens are word pieces (a leading space kept, as BPE tokens have it); each token's log probability
is a deterministic draw, and its `top_logprobs` start with the token itself (as OpenAI's do when the
sampled token is the most likely one), then lower alternatives.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_TOKEN = re.compile(r" ?[^\W_]+| ?[^\w\s]+| ?_+|\s+", re.UNICODE)
MAX_TOP = 20


def tokens(text: str) -> list[str]:
    out = _TOKEN.findall(text)
    assert "".join(out) == text or not text, "tokenizer must cover the text"
    return out


def _logprob(token: str, i: int, rank: int) -> float:
    h = int.from_bytes(hashlib.blake2b(f"{i}\x1f{rank}\x1f{token}".encode("utf-8", "surrogatepass"),
                                       digest_size=4).digest())
    return -round((rank + h / 2**32) * 1.5 + (h % 7) / 100, 6)


def entry(token: str, i: int, top: int) -> dict[str, Any]:
    """One `ChatCompletionTokenLogprob` (also the Responses shape: token, logprob, bytes, top_logprobs)."""
    lp = _logprob(token, i, 0)
    alts = [token, token.strip().upper() or "_", token.strip().lower() + "s", " the", ",", " and", " a", "."]
    alts += [f"<alt{k}>" for k in range(len(alts), MAX_TOP)]
    seen: list[str] = []
    for a in alts:
        if a not in seen:
            seen.append(a)
    tops = [{"token": a, "logprob": lp if r == 0 else min(lp, _logprob(a, i, r)) - r,
             "bytes": list(a.encode("utf-8", "surrogatepass"))} for r, a in enumerate(seen[:top])]
    return {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8", "surrogatepass")), "top_logprobs": tops}


def entries(text: str, top: int, start: int = 0) -> list[dict[str, Any]]:
    return [entry(t, start + i, top) for i, t in enumerate(tokens(text))]
