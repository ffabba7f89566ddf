"""GET /metrics (Prometheus text format) and the middleware that counts HTTP requests by route."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from hq import auth_failures, clock, metrics
from hq.api.errors import envelope
from hq.models import Membership
from hq.selectors import membership_role, token_find

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def scraper_allowed(header: str) -> bool:
    """True for `Bearer <METRICS_TOKEN>`, or the bearer PAT of an admin of the token's workspace."""
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return False
    expected = settings.METRICS_TOKEN
    if expected and hmac.compare_digest(secret.encode(), expected.encode()):
        return True
    token = token_find(clear=secret)
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return False
    if token.expires_at is not None and token.expires_at <= clock.now():
        return False
    return membership_role(user_id=token.user_id, workspace_id=token.workspace_id) == Membership.Role.ADMIN


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every HQ metric, for Prometheus; no workspace or user labels, so any admin PAT may scrape.

    A refused credential counts in the one failure counter (hq.auth_failures) against the
    client's address, as an API token does; past the limit, a scrape that presents a credential
    gets 429 before any check.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    key = auth_failures.address_of(request)
    if header and (wait := auth_failures.exceeded(key)) is not None:
        refusal = auth_failures.refusal(wait)
        response = JsonResponse(envelope(refusal.code, refusal.message, detail=refusal.detail), status=429)
        response["Retry-After"] = str(wait)
        return response
    if not scraper_allowed(header):
        if header:
            auth_failures.record(key)
        response = JsonResponse(
            envelope(
                "unauthenticated",
                "Scraping needs 'Authorization: Bearer <METRICS_TOKEN>' or a workspace admin's token.",
            ),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="hq"'
        return response
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
