"""Application errors. Each maps to one HTTP status and one `code` in the error envelope."""

from __future__ import annotations

from typing import Any


class HQError(Exception):
    """Something a client can fix or act on."""

    status_code = 400
    code = "error"
    default_message = "The request could not be completed."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.fields = fields or {}
        self.detail = detail or {}
        if code:
            self.code = code
        super().__init__(self.message)


class ValidationFailed(HQError):
    """The request body or query failed validation."""

    status_code = 400
    code = "invalid"
    default_message = "The request is invalid."


class Unauthenticated(HQError):
    """No valid token was presented."""

    status_code = 401
    code = "unauthenticated"
    default_message = "A valid personal access token is required."


class Forbidden(HQError):
    """The caller is known but may not do this."""

    status_code = 403
    code = "forbidden"
    default_message = "You may not do this."


class MissingScope(Forbidden):
    """The token lacks a scope the route needs."""

    code = "missing_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This token lacks the '{scope}' scope.", detail={"scope": scope})


class PaymentRequired(HQError):
    """The workspace's plan limit is reached."""

    status_code = 402
    code = "plan_limit_reached"
    default_message = "The plan's limit is reached."


class NotFound(HQError):
    """The object does not exist, or the caller may not see it."""

    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(HQError):
    """The object's current state does not allow this."""

    status_code = 409
    code = "conflict"
    default_message = "The object's current state does not allow this."


class PayloadTooLarge(HQError):
    """The request body is over the size limit."""

    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class Throttled(HQError):
    """Too many requests for this token."""

    status_code = 429
    code = "throttled"
    default_message = "Too many requests."


class ServiceUnavailable(HQError):
    """A backing service is unavailable."""

    status_code = 503
    code = "unavailable"
    default_message = "A backing service is unavailable."


class DependencyUnavailable(ServiceUnavailable):
    """PostgreSQL or Redis did not answer, or had no connection to spare: try again shortly."""

    NAMES = {"database": "The database", "redis": "Redis"}

    def __init__(self, dependency: str, retry_after_s: int) -> None:
        name = self.NAMES.get(dependency, dependency)
        super().__init__(
            f"{name} is not available right now; try again in {retry_after_s} s.",
            detail={"dependency": dependency, "retry_after_s": retry_after_s},
        )
