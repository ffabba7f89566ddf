"""What every destination client shares: the result of one send, and how HTTP answers map to it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from delivery.models import AttemptOutcome
from hq import clock

#: A Retry-After longer than this (an hour) is read as this; a broken header must not park a delivery.
RETRY_AFTER_CAP_S = 3600.0
ERROR_MAX_CHARS = 1000

_SECONDS = re.compile(r"\d+(\.\d+)?")


class NotConfigured(Exception):
    """The settings a destination needs are missing."""


@dataclass(frozen=True)
class SendResult:
    """What one send led to, before HQ's retry policy (max attempts, backoff) is applied."""

    outcome: AttemptOutcome
    external_id: str = ""
    status_code: int | None = None
    error: str = ""
    #: The destination's own Retry-After, in seconds; None when it gave none.
    retry_after_s: float | None = None


class Sender(Protocol):
    """A destination client: sends one message once, without retrying."""

    def send(self, *, destination: dict[str, Any], header: str, body: str) -> SendResult: ...


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Return header `name` from a plain dict, ignoring case."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == wanted:
            return value
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Return a Retry-After header (delay seconds or an HTTP-date) as seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_CAP_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=clock.now().tzinfo)
    return min(max((when - clock.now()).total_seconds(), 0.0), RETRY_AFTER_CAP_S)


def clip(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    """Shorten `text` to at most `limit` characters, marking the cut with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def from_http_status(status_code: int, *, headers: Mapping[str, str] | None, error: str) -> SendResult:
    """Map a refused request: 429 and 5xx are temporary (retry), any other status is final."""
    error = clip(error)
    if status_code == 429 or status_code >= 500:
        return SendResult(
            AttemptOutcome.RETRY,
            status_code=status_code,
            error=error,
            retry_after_s=parse_retry_after(header_value(headers, "Retry-After")),
        )
    return SendResult(AttemptOutcome.FAILED, status_code=status_code, error=error)


def unreachable(exc: BaseException, *, service: str) -> SendResult:
    """A send that got no answer (connection refused, reset, timeout): try again later."""
    return SendResult(AttemptOutcome.RETRY, error=clip(f"{service} did not answer: {type(exc).__name__}: {exc}"))
