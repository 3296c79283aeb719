"""Interaction ids: opaque, HMAC-signed tokens that carry their own attribution.

Format: `abg1.<kid>.<payload>.<sig>` where payload is base64url(msgpack([uuid, tenant,
route, experiment, arm, phase, config_version, traffic])) and sig is the first 16 bytes
of HMAC-SHA256(key[kid], "abg1." + kid + "." + payload), base64url.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

import msgspec

PREFIX = "abg1"
_SIG_BYTES = 16
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(tuple)


class InvalidInteractionId(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class InteractionRef:
    uuid: str
    tenant: str
    route: str
    experiment: str
    arm: str
    phase: int
    config_version: int
    traffic: str = "live"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class IdSigner:
    def __init__(self, keys: tuple[tuple[str, bytes], ...]):
        if not keys:
            raise ValueError("at least one signing key is required")
        self._active_kid, self._active_key = keys[0]
        self._keys = dict(keys)

    def _sig(self, key: bytes, signed: str) -> str:
        return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest()[:_SIG_BYTES])

    def sign(self, ref: InteractionRef) -> str:
        payload = _b64(
            _enc.encode(
                (ref.uuid, ref.tenant, ref.route, ref.experiment, ref.arm, ref.phase, ref.config_version, ref.traffic)
            )
        )
        signed = f"{PREFIX}.{self._active_kid}.{payload}"
        return f"{signed}.{self._sig(self._active_key, signed)}"

    def new(self, **fields: object) -> tuple[str, InteractionRef]:
        ref = InteractionRef(uuid=uuid.uuid4().hex, **fields)  # type: ignore[arg-type]
        return self.sign(ref), ref

    def verify(self, token: str) -> InteractionRef:
        """Return the ref inside a genuine id; raise InvalidInteractionId saying what is wrong."""
        if not isinstance(token, str) or not token:
            raise InvalidInteractionId("interaction_id must be a non-empty string")
        if not token.isascii():  # base64url and the prefix are ASCII; compare_digest refuses others
            raise InvalidInteractionId("interaction_id is malformed (non-ASCII characters)")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX:
            raise InvalidInteractionId("interaction_id is malformed or truncated")
        _, kid, payload, sig = parts
        key = self._keys.get(kid)
        if key is None:
            raise InvalidInteractionId("interaction_id was signed with an unknown or retired key")
        signed = f"{PREFIX}.{kid}.{payload}"
        if not hmac.compare_digest(self._sig(key, signed), sig):
            raise InvalidInteractionId("interaction_id signature does not verify (forged or altered)")
        try:
            fields = _dec.decode(_unb64(payload))
            return InteractionRef(*fields)
        except Exception:
            raise InvalidInteractionId("interaction_id payload is corrupt") from None
