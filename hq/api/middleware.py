"""Middleware shared by every route."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from hq.api.errors import json_error


class BodySizeLimitMiddleware:
    """Refuse request bodies over `HQ_MAX_BODY_BYTES` with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return json_error(request, "invalid", "Content-Length is not a number.", 400)
        if length > settings.HQ_MAX_BODY_BYTES:
            return json_error(
                request,
                "payload_too_large",
                f"The request body is {length} bytes; the limit is {settings.HQ_MAX_BODY_BYTES}.",
                413,
            )
        return self.get_response(request)
