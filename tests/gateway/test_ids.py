"""Interaction ids: any string a client sends is a clean InvalidInteractionId, never a crash."""

from __future__ import annotations

import pytest

from gateway.ids import IdSigner, InteractionRef, InvalidInteractionId

SIGNER = IdSigner((("k1", b"0" * 32),))
REF = InteractionRef(uuid="u" * 32, tenant="acme", route="support", experiment="exp", arm="control", phase=1,
                     config_version=3)


def test_a_genuine_id_verifies() -> None:
    assert SIGNER.verify(SIGNER.sign(REF)) == REF


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + "é",  # non-ASCII signature (hmac.compare_digest raised TypeError)
    lambda t: t[:-1] + "\u2603",
    lambda t: t.replace("k1", "k\u00e91"),
    lambda t: t + "\ud800",  # a lone surrogate
    lambda t: "abg1.k1.\u00ff\u00ff.sig",
])
def test_non_ascii_ids_are_invalid_not_errors(mangle: object) -> None:
    token = mangle(SIGNER.sign(REF))  # type: ignore[operator]
    with pytest.raises(InvalidInteractionId, match="malformed"):
        SIGNER.verify(token)
