"""httpx's top-level calls (`get`, `post`, ...) on one shared client that keeps no connections.

`httpx.get(...)` builds a whole `Client` per call, and with it an SSL context loaded from the
certifi bundle: ~48 ms of CPU per call on this machine, even for plain HTTP on loopback, and the
tests' polls make thousands of such calls. This client is built once; with keep-alive off, every
call still opens its own connection, exactly like `httpx.get`, for ~1.5 ms (a restarted server on
the same port never meets a stale pooled connection). httpx clients are safe to share across threads.
"""

from __future__ import annotations

import httpx

__all__ = ["delete", "get", "patch", "post", "put", "request", "stream"]

_client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=httpx.Timeout(5.0))

request = _client.request
stream = _client.stream
get = _client.get
post = _client.post
put = _client.put
patch = _client.patch
delete = _client.delete
