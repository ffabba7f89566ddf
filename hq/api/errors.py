"""One error envelope for every API error: {"error": {"code", "message", "fields", "detail"}}."""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from hq.errors import DependencyUnavailable, HQError

logger = logging.getLogger(__name__)


class ErrorBody(TypedDict):
    code: str
    message: str
    fields: dict[str, Any]
    detail: dict[str, Any]


class Envelope(TypedDict):
    error: ErrorBody


def envelope(
    code: str, message: str, fields: dict[str, Any] | None = None, detail: dict[str, Any] | None = None
) -> Envelope:
    """Return the error body every API error shares."""
    return {"error": {"code": code, "message": message, "fields": fields or {}, "detail": detail or {}}}


def flatten_errors(detail: Any) -> dict[str, list[str]] | list[str]:
    """Turn DRF's nested error detail into {field: [messages]} (nested keys joined with dots)."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            flat = flatten_errors(value)
            if isinstance(flat, dict):
                for sub, msgs in flat.items():
                    out[f"{key}.{sub}"] = msgs
            else:
                out[str(key)] = flat
        return out
    if isinstance(detail, list):
        messages: list[str] = []
        nested: dict[str, list[str]] = {}
        for i, item in enumerate(detail):
            flat = flatten_errors(item)
            if isinstance(flat, dict):
                for sub, m in flat.items():
                    nested[f"{i}.{sub}"] = m
            else:
                messages.extend(flat)
        return nested or messages
    return [str(detail)]


def _validation_body(detail: Any) -> Envelope:
    flat = flatten_errors(detail)
    if isinstance(flat, list):
        return envelope("invalid", "; ".join(flat) or "The request is invalid.", {"non_field_errors": flat})
    first = next(iter(flat.items()), None)
    message = f"{first[0]}: {first[1][0]}" if first and first[1] else "The request is invalid."
    return envelope("invalid", f"Invalid input. {message}", flat)


_DRF_CODES = {
    drf.ParseError: ("malformed_json", 400),
    drf.NotAuthenticated: ("unauthenticated", 401),
    drf.AuthenticationFailed: ("unauthenticated", 401),
    drf.PermissionDenied: ("forbidden", 403),
    drf.NotFound: ("not_found", 404),
    drf.MethodNotAllowed: ("method_not_allowed", 405),
    drf.NotAcceptable: ("not_acceptable", 406),
    drf.UnsupportedMediaType: ("unsupported_media_type", 415),
    drf.Throttled: ("throttled", 429),
}


def _unsupported_media_type_message(exc: drf.APIException, context: dict[str, Any]) -> str:
    request = context.get("request")
    content_type = (getattr(request, "content_type", "") or "").strip()
    if not content_type:
        return "The request has a body but no Content-Type; send JSON with 'Content-Type: application/json'."
    return f"Bodies are JSON: send 'Content-Type: application/json' (not {content_type[:100]!r})."


def dependency_of(exc: BaseException | None) -> str | None:
    """Return "database" or "redis" when `exc` says that one is away or out of connections, else None.

    PostgreSQL unreachable, refusing connections ("too many clients"), a pool with no connection to
    spare within `HQ_DB_POOL_TIMEOUT_S`, a connection lost mid-request, a statement cancelled or a
    transaction rolled back by the server: all are OperationalError or InterfaceError, and all are
    worth retrying. Redis's own command errors (ResponseError) are not unavailability.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return "database"
    if isinstance(exc, redis.RedisError) and not isinstance(exc, redis.ResponseError):
        return "redis"
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        return None
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):  # raised outside Django's wrapper
        return "database"
    return None


def unavailable(exc: BaseException) -> DependencyUnavailable | None:
    """The 503 to answer for `exc`, when it says a dependency is away (logged as a warning)."""
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    logger.warning("503: the %s is unavailable (%s: %s)", dependency, exc.__class__.__name__, str(exc)[:300])
    return DependencyUnavailable(dependency, settings.HQ_UNAVAILABLE_RETRY_AFTER_S)


def hq_headers(exc: HQError) -> dict[str, str]:
    """The headers an HQError's answer carries: the bearer challenge on 401, `Retry-After` when it
    says how long to wait."""
    headers: dict[str, str] = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hq"'
    retry_after = exc.detail.get("retry_after_s") if exc.detail else None
    if retry_after:
        headers["Retry-After"] = str(int(retry_after))
    return headers


def hq_error_response(exc: HQError) -> JsonResponse:
    """An HQError answered outside DRF (`/metrics`), as the DRF handler would answer it."""
    body = envelope(exc.code, exc.message, exc.fields, exc.detail)
    return JsonResponse(body, status=exc.status_code, headers=hq_headers(exc))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map HQ, DRF and Django errors to the envelope; anything else stays a 500 (logged)."""
    exc = unavailable(exc) or exc
    answer = _answer(exc, context)
    if answer is None:
        return None
    status, body, headers = answer
    set_rollback()
    return Response(body, status=status, headers=headers)


#: The status, body and headers of an error response.
_Answer = tuple[int, Envelope, dict[str, str]]


def _answer(exc: Exception, context: dict[str, Any]) -> _Answer | None:
    if isinstance(exc, HQError):
        return _hq_answer(exc)
    if isinstance(exc, drf.ValidationError):
        return 400, _validation_body(exc.detail), {}
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return 400, _validation_body(detail), {}
    if isinstance(exc, Http404):
        return 404, envelope("not_found", "Not found."), {}
    if isinstance(exc, DjangoPermissionDenied):
        return 403, envelope("forbidden", "You may not do this."), {}
    if isinstance(exc, RequestDataTooBig):
        return 413, envelope("payload_too_large", "The request body is too large."), {}
    if isinstance(exc, drf.APIException):
        return _drf_answer(exc, context)
    return None


def _hq_answer(exc: HQError) -> _Answer:
    return exc.status_code, envelope(exc.code, exc.message, exc.fields, exc.detail), hq_headers(exc)


def _drf_answer(exc: drf.APIException, context: dict[str, Any]) -> _Answer:
    headers: dict[str, str] = {}
    code, status = next(
        ((c, s) for cls, (c, s) in _DRF_CODES.items() if isinstance(exc, cls)),
        (exc.default_code, exc.status_code),
    )
    message = str(exc.detail) if not isinstance(exc.detail, dict | list) else "Request refused."
    if code == "malformed_json":
        message = f"The body is not valid JSON: {exc.detail}"
    elif code == "unsupported_media_type":
        message = _unsupported_media_type_message(exc, context)
    body = envelope(code, message)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="hq"'
    if isinstance(exc, drf.Throttled):
        wait: float | None = exc.wait  # type: ignore[attr-defined]  # DRF sets it in __init__; the stub omits it
        if wait:
            headers["Retry-After"] = str(int(wait) + 1)
            body["error"]["detail"] = {"retry_after_s": int(wait) + 1}
    return status, body, headers


def json_error(request: HttpRequest, code: str, message: str, status: int) -> JsonResponse:
    """Return an envelope outside DRF (middleware, Django's 404/500 handlers)."""
    return JsonResponse(envelope(code, message), status=status)
