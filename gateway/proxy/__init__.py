"""The proxy endpoints (raw ASGI, the hot path).

Modules, each with one job: `request` (headers, body, the JSON parse), `choose` (route ->
arm, the signed id), `forward` (one upstream attempt, breaker, fallback), `sse` (relaying a
stream), `chat_relay` / `responses` / `embeddings` (what each endpoint's answer becomes),
`respond` (writing answers), `record` (the one Interaction event), `handler` (the shared
request lifecycle). The upstream side lives in `gateway.upstream`.
"""

from gateway.proxy import cors
from gateway.proxy.chat import chat_completions
from gateway.proxy.embeddings import embeddings
from gateway.proxy.request import MAX_HEADER_BYTES
from gateway.proxy.responses import responses_create

__all__ = ["MAX_HEADER_BYTES", "chat_completions", "cors", "embeddings", "responses_create"]
