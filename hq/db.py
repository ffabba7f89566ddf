"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert many rows: one `INSERT ... SELECT FROM unnest()` on PostgreSQL, bulk_create elsewhere.

    Django's bulk_create sends one placeholder per column and row (26,000 for 1,000 jobs) and
    spends most of a scheduler batch compiling them; unnest sends one array per column. Primary
    keys are set on the objects beforehand (UUIDs) or left to the database (auto ids); no signals are sent, as with
    bulk_create.
    """
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=500)
        return
    # An auto-increment key left empty is the database's to fill.
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and getattr(objs[0], f.attname) is None)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    params = [_column(f, objs) for f in fields]
    import psycopg

    connection.ensure_connection()
    # A server-side-binding cursor with binary dumping: Django's client-side cursor would quote
    # every array element through a regex, a third of the cost of a 1,000-row insert.
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(
            f"INSERT INTO {model._meta.db_table} ({columns}) SELECT * FROM unnest({arrays})", params, binary=True
        )


def _column(field: models.Field, objs: Sequence[models.Model]) -> list[Any]:
    """One column's values as psycopg adapts them; only JSON needs wrapping (PostgreSQL only)."""
    values = [getattr(obj, field.attname) for obj in objs]
    if isinstance(field, models.JSONField):
        from psycopg.types.json import Jsonb

        return [None if v is None else Jsonb(v) for v in values]
    return values
