"""Middleware shared by every route."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.html import escape

from hq.api.errors import envelope, json_error, unavailable


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/v1/")


def _bad_request(request: HttpRequest, code: str, message: str) -> HttpResponse:
    if _is_api(request):
        return json_error(request, code, message, 400)
    return HttpResponseBadRequest(message)


def _query_has_nul(request: HttpRequest) -> bool:
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


class RequestGuardMiddleware:
    """Refuse requests the API cannot take before anything acts on them.

    - bodies over `HQ_MAX_BODY_BYTES`: 413, from the Content-Length alone;
    - NUL in the path or the query string: 400 (PostgreSQL cannot store or compare it).

    Bodies are checked where they are parsed, by the one parser (hq.api.parsers), so every content
    type it accepts is checked and no other.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            return _bad_request(request, "invalid", "Content-Length is not a number of bytes.")
        if length > settings.HQ_MAX_BODY_BYTES:
            return json_error(
                request,
                "payload_too_large",
                f"The request body is {length} bytes; the limit is {settings.HQ_MAX_BODY_BYTES}.",
                413,
            )
        if "\x00" in request.path or _query_has_nul(request):
            return _bad_request(request, "invalid", "The URL may not contain NUL characters.")
        return self.get_response(request)


# The name settings.MIDDLEWARE uses.
BodySizeLimitMiddleware = RequestGuardMiddleware


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """503 with Retry-After when `exc` says PostgreSQL or Redis is away; None for any other error.

    The admin's pages get a short HTML page; everything else (the API, /metrics, the probes) the
    error envelope (`unavailable`, `detail.dependency`).
    """
    error = unavailable(exc)
    if error is None:
        return None
    retry_after = str(error.detail["retry_after_s"])
    if request.path.startswith("/admin/"):
        response: HttpResponse = HttpResponse(
            "<!doctype html><html><head><title>Service unavailable</title></head><body>"
            f"<h1>Service unavailable</h1><p>{escape(error.message)}</p></body></html>",
            status=error.status_code,
            content_type="text/html; charset=utf-8",
        )
    else:
        response = JsonResponse(
            envelope(error.code, error.message, error.fields, error.detail), status=error.status_code
        )
    response["Retry-After"] = retry_after
    return response


def _remember_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Keep the exception behind a 500 on its request, for DependencyErrorMiddleware to look at.

    Django turns an exception raised in any middleware into a 500 response right where it is
    raised (and sends this signal from inside that `except`), so an outer middleware never sees the
    exception itself.
    """
    if request is not None:
        request._hq_exception = sys.exc_info()[1]  # type: ignore[attr-defined]


got_request_exception.connect(_remember_exception, dispatch_uid="hq-remember-exception")


class DependencyErrorMiddleware:
    """503, never 500, when PostgreSQL or Redis is away, wherever in the request that showed.

    DRF views map these errors in their exception handler (hq.api.errors); this catches the rest:
    plain Django views and the admin (`process_exception`), and errors raised inside other
    middleware (the 500 Django made of them is replaced on the way out).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        exc = getattr(request, "_hq_exception", None)
        if response.status_code == 500 and exc is not None:
            return unavailable_response(request, exc) or response
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable_response(request, exception)
