"""One way to show a time in the ops console.

The instant in UTC to the second, plus the wall time in each zone that matters: a schedule's own
zone (passed by the page) and the viewer's own zone (`User.time_zone`, a preference each user sets
on the admin's "My time zone" page): "2026-12-05 14:30:05 UTC (09:30:05 America/New_York; 15:30:05
Europe/Stockholm)", with the local date too when it differs from the UTC one. Lists show a
relative time ("3 min ago", "in 2 h") with that exact text on hover (`when_html`).

The viewer is known per request: `ViewerZoneMiddleware` puts the request in a context variable and
`viewer_zone()` reads its user's zone when a time is first shown, so no page passes it around and a
request that shows no time reads nothing. Django's own time zone stays UTC (`timezone.activate` is
not used): stored fields that Django itself renders (a model's raw fields, the History page) keep
the one UTC format of `hq/formats/en/formats.py` (FORMAT_MODULE_PATH).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

#: The request being answered (set by ViewerZoneMiddleware), whose user's zone `viewer_zone` reads.
_request: ContextVar[HttpRequest | None] = ContextVar("hq_timefmt_request", default=None)


@cache
def zone_names() -> frozenset[str]:
    """Every IANA zone name of the pinned tzdata (settings reset zoneinfo's path to it)."""
    return frozenset(zoneinfo.available_timezones())


def time_zone_problem(name: str) -> str | None:
    """What is wrong with `name` as a user's time zone (blank is fine: UTC only), or None."""
    if name and name not in zone_names():
        return f"'{name}' is not an IANA time zone (such as Europe/Stockholm or America/New_York)."
    return None


def viewer_zone() -> str:
    """The signed-in viewer's own zone in this request; "" outside a request or when they chose none."""
    request = _request.get()
    if request is None:
        return ""
    zone = getattr(getattr(request, "user", None), "time_zone", "")
    return zone if isinstance(zone, str) else ""


class ViewerZoneMiddleware:
    """Make the request's viewer known to `viewer_zone` for the time of the request (after
    AuthenticationMiddleware; the user is loaded only if a page shows a time)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)  # rendered inside (a TemplateResponse too)
        finally:
            _request.reset(token)


def _wall(utc: datetime, zone: str) -> str | None:
    try:
        local = utc.astimezone(ZoneInfo(zone))
    except (ValueError, KeyError):  # a zone that does not load: left out
        return None
    wall = local.strftime("%H:%M:%S" if local.date() == utc.date() else "%Y-%m-%d %H:%M:%S")
    return f"{wall} {zone}"


def exact(instant: datetime | None, zone: str | None = None) -> str:
    """The instant in UTC to the second, then its wall time in `zone` (a schedule's) and in the
    viewer's own zone, each when it is not UTC and not already shown."""
    if instant is None:
        return "—"
    utc = instant.astimezone(UTC)
    text = utc.strftime(UTC_FORMAT)
    zones = [z for z in dict.fromkeys([zone or "", viewer_zone()]) if z and z != "UTC"]
    walls = [w for w in (_wall(utc, z) for z in zones) if w]
    return f"{text} ({'; '.join(walls)})" if walls else text


def relative(instant: datetime, now: datetime) -> str:
    """How long ago or ahead, for people: "just now", "42 s ago", "in 7 min", "3 h ago", "2 d ago"."""
    delta = (instant - now).total_seconds()
    seconds = abs(delta)
    if seconds < 1:
        return "just now"
    if seconds < 90:
        amount = f"{seconds:.0f} s"
    elif seconds < 90 * 60:
        amount = f"{seconds / 60:.0f} min"
    elif seconds < 48 * 3600:
        amount = f"{seconds / 3600:.0f} h"
    else:
        amount = f"{seconds / 86400:.0f} d"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


def duration(seconds: float | None) -> str:
    """A length of time: "850 ms", "42.1 s", "7 min 5 s", "3 h 20 min"; "—" when unknown."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def when_html(instant: datetime | None, now: datetime, zone: str | None = None) -> str:
    """For lists: the relative time, with the exact instant on hover and in `datetime`."""
    if instant is None:
        return "—"
    return format_html(
        '<time class="hq-when" datetime="{}" title="{}">{}</time>',
        instant.astimezone(UTC).isoformat(),
        exact(instant, zone),
        relative(instant, now),
    )
