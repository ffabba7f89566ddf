"""What the client raises: HQ's error envelope as typed exceptions, plus transport failures and timeouts.

Every answer of 400 or more carries `{"error": {"code", "message", "fields", "detail"}}`; `error_for`
picks the class by status (and code where one status means two things), so callers catch what they
act on: `NotFound`, `Conflict` (with the object's `state`), `RateLimited` (with `retry_after`)...
"""

from __future__ import annotations

from typing import Any


class HQError(Exception):
    """HQ refused a request, or could not be reached (the base of everything the client raises)."""

    #: The HTTP status, or None when no answer came (`TransportError`, `Timeout`).
    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        fields: dict[str, list[str]] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else type(self).status
        self.code = code
        self.fields: dict[str, list[str]] = fields or {}
        self.detail: dict[str, Any] = detail or {}

    def __str__(self) -> str:
        prefix = f"{self.status} {self.code}: " if self.status else ""
        return f"{prefix}{self.message}"


class ValidationError(HQError):
    """400: the body, query or path was refused; `fields` maps each field (nested ones dotted) to messages."""

    status = 400


class AuthError(HQError):
    """401: the token is missing, unknown, expired or revoked."""

    status = 401


class PlanLimitReached(HQError):
    """402: the workspace's plan limit is reached (`limit`, `current`)."""

    status = 402

    @property
    def limit(self) -> int | None:
        value = self.detail.get("limit")
        return int(value) if value is not None else None


class PermissionDenied(HQError):
    """403: the token lacks a scope (`scope`), or the caller's role may not do this."""

    status = 403

    @property
    def scope(self) -> str | None:
        value = self.detail.get("scope")
        return str(value) if value is not None else None


class NotFound(HQError):
    """404: no such object, or not one this token may read."""

    status = 404


class Conflict(HQError):
    """409: the object's current state does not allow this; `state` says which state it is in."""

    status = 409

    @property
    def state(self) -> str | None:
        value = self.detail.get("state")
        return str(value) if value is not None else None


class PayloadTooLarge(HQError):
    """413: the request body is over HQ's limit."""

    status = 413


class RateLimited(HQError):
    """429: too many requests (or failed authentications); wait `retry_after` seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(HQError):
    """503: a dependency of HQ (`dependency`: the database) is away; retry after `retry_after` seconds."""

    status = 503

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def dependency(self) -> str | None:
        value = self.detail.get("dependency")
        return str(value) if value is not None else None


class ServerError(HQError):
    """Any other 5xx: a bug in HQ or a proxy in front of it."""


class TransportError(HQError):
    """No answer: the connection failed, was reset, or timed out."""


class Timeout(HQError):
    """`wait` gave up: the job had not finished within the timeout; `job` is the last state seen."""

    def __init__(self, message: str, *, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


_BY_STATUS: dict[int, type[HQError]] = {
    cls.status: cls
    for cls in (ValidationError, AuthError, PlanLimitReached, PermissionDenied, NotFound, Conflict, PayloadTooLarge)
    if cls.status is not None
}


def retry_after_s(header: str | None, detail: dict[str, Any]) -> float | None:
    """Seconds to wait, from `Retry-After` (seconds) or the envelope's `retry_after_s`."""
    for value in (header, detail.get("retry_after_s")):
        try:
            if value is not None:
                return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return None


def error_for(status: int, body: Any, retry_after_header: str | None = None) -> HQError:
    """The exception for an error answer: its status, and its envelope when the body is one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "", "message": f"HQ answered {status} without an error envelope."}
    message = str(error.get("message") or f"HQ answered {status}.")
    fields: dict[str, list[str]] = error["fields"] if isinstance(error.get("fields"), dict) else {}
    detail: dict[str, Any] = error["detail"] if isinstance(error.get("detail"), dict) else {}
    common: dict[str, Any] = {
        "status": status,
        "code": str(error.get("code") or ""),
        "fields": fields,
        "detail": detail,
    }
    if status == 429:
        return RateLimited(message, retry_after=retry_after_s(retry_after_header, detail), **common)
    if status == 503:
        return Unavailable(message, retry_after=retry_after_s(retry_after_header, detail), **common)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else HQError)
    return cls(message, **common)
