"""OpenAI-shaped errors: `{"error": {"message", "type", "code", "param"?}}` everywhere."""

from __future__ import annotations

import msgspec

_enc = msgspec.json.Encoder()

# status -> OpenAI's `type` for that status
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    428: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answered to the client; raise it anywhere below a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.code, param=self.param)


def error_body(status: int, message: str, code: str, *, param: str | None = None) -> bytes:
    err: dict[str, object] = {"message": message, "type": _TYPES.get(status, "server_error"), "code": code}
    if param is not None:
        err["param"] = param
    return _enc.encode({"error": err})
