"""SQL pieces that differ between PostgreSQL and SQLite, for aggregate reads written as raw SQL.

The ops views (`queueapp.observability`, `schedules.observability`) compute counts and percentiles
in one statement over many rows; the ORM has no percentile aggregate and no bucketing by time, so
they write SQL, and every piece that PostgreSQL and SQLite (`make run` without PostgreSQL) spell
differently is here. SQLite gets `percentile_cont` as an aggregate registered on the connection.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, TypedDict

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import QuerySet

#: The percentiles every read reports, in this order.
FRACTIONS: tuple[float, ...] = (0.5, 0.95, 0.99)


class Percentiles(TypedDict):
    p50: float | None
    p95: float | None
    p99: float | None


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def epoch_ms(later: str, earlier: str) -> str:
    """SQL for `later - earlier` in milliseconds (two timestamp columns)."""
    if _postgresql():
        return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000)"
    return f"((julianday({later}) - julianday({earlier})) * 86400000.0)"


def greatest(*exprs: str) -> str:
    """SQL for the largest of `exprs` (SQLite's multi-argument MAX is PostgreSQL's GREATEST)."""
    return f"{'GREATEST' if _postgresql() else 'MAX'}({', '.join(exprs)})"


def percentiles_sql(expr: str, condition: str = "TRUE") -> str:
    """SQL for p50/p95/p99 of `expr` over the rows matching `condition`, in one sort."""
    fractions = ",".join(str(f) for f in FRACTIONS)
    if _postgresql():
        return f"percentile_cont(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY {expr}) FILTER (WHERE {condition})"
    return f"hq_percentiles({expr}, '{fractions}') FILTER (WHERE {condition})"


def bucket_sql(column: str, step_s: int) -> str:
    """SQL for the index of the `step_s` bucket holding `column`, counted from the first `%s` param."""
    if _postgresql():
        return f"FLOOR(EXTRACT(EPOCH FROM ({column} - %s)) / {int(step_s)})::int"
    return f"CAST((julianday({column}) - julianday(%s)) * 86400.0 / {int(step_s)} AS INTEGER)"


def sql_param(value: datetime) -> Any:
    """`value` as the database driver takes it in a raw statement."""
    return connection.ops.adapt_datetimefield_value(value)


def subquery(rows: QuerySet[Any], *fields: str) -> tuple[str, tuple[Any, ...]]:
    """SQL and params of `rows` as a plain SELECT of `fields` (no ordering), to aggregate over."""
    sql, params = rows.order_by().values(*fields).query.sql_with_params()
    return sql, tuple(params)


def cursor() -> CursorWrapper:
    """A cursor on the default database; SQLite gets the percentile aggregate first."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_aggregate("hq_percentiles", 2, _SQLitePercentiles)
    return connection.cursor()


def as_percentiles(value: Any) -> Percentiles:
    """Turn a percentile array (PostgreSQL) or JSON text (SQLite) into {p50, p95, p99}, rounded ms."""
    if isinstance(value, str):
        value = json.loads(value)
    values = list(value) if value else [None] * len(FRACTIONS)
    return {"p50": _round(values[0]), "p95": _round(values[1]), "p99": _round(values[2])}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def interpolate(ordered: list[float], fraction: float) -> float:
    """The `fraction` percentile of sorted values, interpolated as percentile_cont does."""
    pos = fraction * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _SQLitePercentiles:
    """percentile_cont for SQLite: linear interpolation, like PostgreSQL's."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fractions = ""

    def step(self, value: float | None, fractions: str) -> None:
        self.fractions = fractions
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> str | None:
        if not self.values:
            return None
        return json.dumps([interpolate(sorted(self.values), float(f)) for f in self.fractions.split(",")])
