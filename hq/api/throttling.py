"""Per-token request throttling: `HQ_THROTTLE_RATE` requests per token per window (hq.ratewindow).

Counted in leases across processes, so a busy token costs a Redis round trip every few dozen
requests; fails open when Redis is away.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from hq.permissions import Principal
from hq.ratewindow import Admission, parse_rate

__all__ = ["TokenRateThrottle", "parse_rate"]


@functools.cache
def _admission(rate: str) -> Admission:
    return Admission("throttle", rate)


class TokenRateThrottle(BaseThrottle):
    """Allow `HQ_THROTTLE_RATE` requests per token per window."""

    def allow_request(self, request: Any, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return True
        allowed, self._wait = _admission(settings.HQ_THROTTLE_RATE).allow((str(principal.token.pk),))
        return allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
