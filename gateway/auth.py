"""Client API keys -> tenant, and the admin token. Only sha256 of keys is ever kept.

Keys are looked up by their sha256 digest (a dict probe on a hash reveals nothing
useful about the secret) and then compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config import Auth, RouterConfig
from gateway.errors import ApiError

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    key_hash: str | None  # sha256 hex of the presented key; None = no key (open mode)
    routes: frozenset[str] | None  # None = every route
    admin: bool
    rate_rps: float | None = None
    rate_burst: int | None = None

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def single_authorization(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The one `Authorization` header of an ASGI header list, or None. Two of them are
    refused (400): proxies and frameworks disagree on which one counts (first or last), so
    answering either would let a client smuggle a second identity past a proxy's check."""
    found: str | None = None
    for k, v in raw_headers:
        if k.lower() == b"authorization":
            if found is not None:
                raise ApiError(400, "multiple Authorization headers: send exactly one", "multiple_authorization")
            found = v.decode("latin-1")
    return found


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AuthIndex:
    """Precomputed once per config version."""

    def __init__(self, auth: Auth | None):
        self.open = auth is None
        self.admin_token_env = auth.admin_token_env if auth else "ABGATE_ADMIN_TOKEN"
        self._keys = {}
        for k in auth.keys if auth else ():
            self._keys[k.sha256] = Principal(
                tenant=k.tenant,
                key_hash=k.sha256,
                routes=frozenset(k.routes) if k.routes is not None else None,
                admin=k.admin,
                rate_rps=k.rate_limit_rps,
                rate_burst=k.rate_limit_burst,
            )
        self._anon = Principal(tenant=DEFAULT_TENANT, key_hash=None, routes=None, admin=False)
        self._open_cache: dict[str, Principal] = {}

    @classmethod
    def from_config(cls, cfg: RouterConfig) -> AuthIndex:
        return cls(cfg.auth)

    def admin_token_digest(self) -> bytes | None:
        token = os.environ.get(self.admin_token_env)
        return hashlib.sha256(token.encode()).digest() if token else None

    def is_admin_token(self, token: str | None) -> bool:
        expected = self.admin_token_digest()
        if expected is None or token is None:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), expected)

    def client(self, authorization: str | None) -> Principal:
        """The principal for a chat/models/feedback request; raises 401 ApiError."""
        token = bearer(authorization)
        if self.open:
            if token is None:
                return self._anon
            p = self._open_cache.get(token)
            if p is None:
                p = Principal(tenant=DEFAULT_TENANT, key_hash=sha256_hex(token), routes=None, admin=False)
                if len(self._open_cache) < 10_000:  # bounded: dev mode only
                    self._open_cache[token] = p
            return p
        if token is None:
            raise ApiError(401, "missing API key: send `Authorization: Bearer <key>`", "missing_api_key")
        digest = sha256_hex(token)
        p = self._keys.get(digest)
        if p is None or not hmac.compare_digest(p.key_hash or "", digest):
            if self.is_admin_token(token):
                return Principal(tenant=DEFAULT_TENANT, key_hash=digest, routes=None, admin=True)
            raise ApiError(401, "invalid API key", "invalid_api_key")
        return p

    def may_pin(self, principal: Principal, authorization: str | None) -> bool:
        """Who may pin an arm with `x-abgate-arm`: admin keys, the admin token, or anyone in
        open dev mode without an admin token."""
        if principal.admin:
            return True
        if self.is_admin_token(bearer(authorization)):
            return True
        return self.open and self.admin_token_digest() is None

    def check_admin(self, authorization: str | None) -> None:
        """Admin endpoints: the admin token when one is configured; open dev mode otherwise."""
        expected = self.admin_token_digest()
        if expected is None:
            if self.open:
                return
            raise ApiError(
                403, f"admin endpoints are disabled: set the {self.admin_token_env} environment variable",
                "admin_disabled")
        token = bearer(authorization)
        if token is None:
            raise ApiError(401, "missing admin token: send `Authorization: Bearer <admin token>`", "missing_api_key")
        if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), expected):
            raise ApiError(401, "invalid admin token", "invalid_admin_token")


def request_principal(request: object) -> Principal:
    """The caller of a Litestar request (feedback, admin helpers): raises 401 ApiError.

    Uses the config version the runtime serves right now.
    """
    rt = request.app.state.runtime  # type: ignore[attr-defined]
    principal: Principal = rt.compiled.auth.client(request.headers.get("authorization"))  # type: ignore[attr-defined]
    return principal
