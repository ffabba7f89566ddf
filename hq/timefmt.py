"""One way to show a time in the ops console.

The instant in UTC to the second, plus the wall time in the zone that matters when there is one (a
schedule's own zone): "2026-12-05 14:30:05 UTC (09:30:05 America/New_York)", with the local date
too when it differs from the UTC one. Lists show a relative time ("3 min ago", "in 2 h") with that
exact text on hover (`when_html`); Django's own date rendering uses the same format
(`hq/formats/en/formats.py`, FORMAT_MODULE_PATH).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.utils.html import format_html

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def exact(instant: datetime | None, zone: str | None = None) -> str:
    """The instant in UTC to the second, and its wall time in `zone` when that is not UTC."""
    if instant is None:
        return "—"
    utc = instant.astimezone(UTC)
    text = utc.strftime(UTC_FORMAT)
    if not zone or zone == "UTC":
        return text
    try:
        local = utc.astimezone(ZoneInfo(zone))
    except (ValueError, KeyError):  # a zone that does not load: the UTC instant alone
        return text
    wall = local.strftime("%H:%M:%S" if local.date() == utc.date() else "%Y-%m-%d %H:%M:%S")
    return f"{text} ({wall} {zone})"


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
