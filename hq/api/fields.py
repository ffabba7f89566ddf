"""Formatting shared by every API: RFC 3339 UTC datetimes with milliseconds and `Z`."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

OUT_OF_RANGE = "The datetime is out of range once converted to UTC."


def iso(value: datetime | None) -> str | None:
    """Return `2026-03-29T01:00:00.000Z` for an aware datetime (None stays None)."""
    if value is None:
        return None
    return _iso(value)


@functools.lru_cache(maxsize=4096)
def _iso(value: datetime) -> str:
    """`iso`, remembered: the jobs of one batch share their datetimes, a tenth of its response's cost.
    Equal datetimes are the same instant (whatever their zones), so they read the same in UTC."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class UTCDateTimeField(serializers.DateTimeField):
    """Outputs `iso()`; refuses naive input instead of guessing a zone."""

    default_error_messages = {
        "naive": "Give a timezone: an RFC 3339 datetime with Z or an offset, e.g. 2026-03-29T01:00:00Z.",
        "out_of_range": OUT_OF_RANGE,
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail("naive")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00, 9999-12-31T23:00:00-05:00
            self.fail("out_of_range")

    # DRF's DateTimeField.to_representation answers None for an empty value; its stub says str.
    def to_representation(self, value: datetime | None) -> str | None:  # type: ignore[override]
        return iso(value)


# django-filter ships no type information, so its classes are Any to mypy.
class UTCIsoDateTimeFormField(django_filters.fields.IsoDateTimeField):  # type: ignore[misc]
    """A filter's ISO 8601 datetime, converted to UTC.

    PostgreSQL refuses offsets past ±15:59 ("time zone displacement out of range"), and an
    offset can move a datetime out of Python's range: both are a 400, never a database error.
    """

    def to_python(self, value: object) -> datetime | None:
        result: datetime | None = super().to_python(value)
        if result is None or result.tzinfo is None:
            return result
        try:
            return result.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError(OUT_OF_RANGE, code="out_of_range") from exc


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):  # type: ignore[misc]  # Any, as above
    """`IsoDateTimeFilter` whose value reaches the database in UTC (see UTCIsoDateTimeFormField)."""

    field_class = UTCIsoDateTimeFormField


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (keyword arguments, args): anything else is a 400."""

    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        return value
