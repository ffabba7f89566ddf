"""Formatting shared by every API: RFC 3339 UTC datetimes with milliseconds and `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework import serializers


def iso(value: datetime | None) -> str | None:
    """Return `2026-03-29T01:00:00.000Z` for an aware datetime (None stays None)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class UTCDateTimeField(serializers.DateTimeField):
    """Outputs `iso()`; refuses naive input instead of guessing a zone."""

    default_error_messages = {
        "naive": "Give a timezone: an RFC 3339 datetime with Z or an offset, e.g. 2026-03-29T01:00:00Z."
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail("naive")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime | None) -> str | None:
        return iso(value)
