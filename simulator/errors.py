"""OpenAI-shaped error bodies."""

from __future__ import annotations

from simulator.http import Response, error_body

__all__ = ["error", "error_body", "status_error"]


def error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
          param: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, error_body(message, type_, code, param), headers=headers)


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}


def status_error(status: int, message: str | None = None, retry_after: str = "1") -> Response:
    """An error for a forced or random failure status (x-sim-status, --error-rate, a rate-limited model)."""
    type_ = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = "rate_limit_exceeded" if status == 429 else None
    headers = (("retry-after", retry_after),) if status in (429, 503) else ()
    return error(status, message or f"simulated upstream failure (status {status})", type_, code, headers=headers)
