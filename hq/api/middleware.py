"""Middleware shared by every route."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from hq.api.errors import json_error

# Deeper JSON is refused before a parser, a serializer or PostgreSQL recurses into it: no payload
# the API takes needs more than a handful of levels, and this stays far below Python's recursion limit.
MAX_JSON_DEPTH = 64
# PostgreSQL refuses NUL in text and jsonb; lone surrogates cannot be encoded as UTF-8.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_JSON_TYPES = ("application/json", "+json")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/v1/")


def _bad_request(request: HttpRequest, code: str, message: str) -> HttpResponse:
    if _is_api(request):
        return json_error(request, code, message, 400)
    return HttpResponseBadRequest(message)


def json_problem(body: bytes) -> tuple[str, str] | None:
    """Return (code, message) when a JSON body cannot be taken as it is, else None.

    Refuses invalid UTF-8, nesting deeper than MAX_JSON_DEPTH and strings (keys included) holding
    NUL or lone surrogates. Syntax errors are left to DRF's parser, which names the position.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "malformed_json", f"The body is not valid UTF-8 (byte {exc.start})."
    try:
        value = json.loads(text)
    except RecursionError:
        return "malformed_json", f"The body is nested too deeply (at most {MAX_JSON_DEPTH} levels)."
    except ValueError:
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return "invalid", "Strings may not contain NUL (\\u0000) or unpaired surrogate characters."
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return "malformed_json", f"The body is nested too deeply (at most {MAX_JSON_DEPTH} levels)."
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _query_has_nul(request: HttpRequest) -> bool:
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


class RequestGuardMiddleware:
    """Refuse requests the API cannot take before anything acts on them.

    - bodies over `HQ_MAX_BODY_BYTES`: 413, from the Content-Length alone;
    - NUL in the path or the query string: 400 (PostgreSQL cannot store or compare it);
    - JSON bodies under /v1/ that are not UTF-8, nest deeper than MAX_JSON_DEPTH or hold NUL or
      lone surrogates in any string: 400, so a view, a serializer's JSONField or PostgreSQL never
      turns them into a 500.
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
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if length and _is_api(request) and content_type.endswith(_JSON_TYPES):
            problem = json_problem(request.body)
            if problem:
                return json_error(request, problem[0], problem[1], 400)
        return self.get_response(request)


# The name settings.MIDDLEWARE uses.
BodySizeLimitMiddleware = RequestGuardMiddleware
