"""`single_authorization`: exactly one Authorization header, or a 400 that says so."""

from __future__ import annotations

import pytest

from gateway.auth import single_authorization
from gateway.errors import ApiError


def test_one_or_no_header() -> None:
    assert single_authorization([(b"host", b"x"), (b"authorization", b"Bearer a")]) == "Bearer a"
    assert single_authorization([(b"host", b"x")]) is None


@pytest.mark.parametrize("second", [b"Bearer a", b"Bearer b", b""])
def test_two_headers_are_refused(second: bytes) -> None:
    with pytest.raises(ApiError) as err:
        single_authorization([(b"authorization", b"Bearer a"), (b"x", b"y"), (b"Authorization", second)])
    assert err.value.status == 400 and err.value.code == "multiple_authorization"
    assert "multiple Authorization headers" in err.value.message
