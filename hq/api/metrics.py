"""GET /metrics (Prometheus text format) and the middleware that counts HTTP requests by route."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from hq import auth_failures, metrics, permissions
from hq.api.auth import bearer_principal
from hq.api.errors import hq_error_response
from hq.errors import HQError, Unauthenticated

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def _metrics_token(header: str) -> bool:
    """True for `Bearer <METRICS_TOKEN>` (compared in constant time)."""
    scheme, _, secret = header.partition(" ")
    expected = settings.METRICS_TOKEN
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(secret.strip().encode(), expected.encode())


def _check_scraper(request: HttpRequest) -> None:
    """Raise the 401 or 429 a scrape gets; return when it may scrape."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    refused = Unauthenticated("Scraping needs 'Authorization: Bearer <METRICS_TOKEN>' or a workspace admin's token.")
    if not header:
        raise refused
    if _metrics_token(header):
        wait = auth_failures.exceeded(auth_failures.address_of(request))
        if wait is not None:
            raise auth_failures.refusal(wait)
        return
    try:
        principal = bearer_principal(header, request)
    except Unauthenticated:
        raise refused from None
    if not permissions.may_scrape_metrics(principal):
        raise refused


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every HQ metric, for Prometheus; no workspace or user labels, so any admin PAT may scrape.

    A PAT goes through the API's own token check (`bearer_principal`), so a refused one counts in
    the one failure counter (hq.auth_failures) against the client's address and the credential,
    and a valid one is never throttled. The `METRICS_TOKEN` is a secret an operator chose and may
    be guessable, so, like the admin password, it is refused (429) while the address is throttled.
    A request without credentials is neither counted nor throttled.
    """
    try:
        _check_scraper(request)
    except HQError as exc:
        return hq_error_response(exc)
    metrics.flush()  # this process's own increments, so a scrape right after a request sees it
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE)


def route_label(request: HttpRequest) -> str:
    """The matched URL pattern (`/v1/queue/jobs/<job_id>`), never the raw path: ids stay out of labels."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return "<unmatched>"
    route = _NAMED_GROUP.sub(lambda m: f"<{m.group(1)}>", match.route)
    return "/" + route.replace("^", "").replace("$", "").lstrip("/")


class RequestMetricsMiddleware:
    """Count each request by route pattern, method and status, and time it (first in the chain, so
    requests that other middleware answers, such as 413, count too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        metrics.http_request(
            route_label(request), request.method or "", response.status_code, time.perf_counter() - started
        )
        return response
