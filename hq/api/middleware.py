"""Middleware shared by every route."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from hq.api.errors import json_error


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
