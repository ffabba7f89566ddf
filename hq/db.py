"""Database helpers shared by the apps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models


def bulk_insert(model: type[models.Model], columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert rows given column-wise (`{attname: [value per row]}`); return the row count.

    Fields left out take their default, evaluated once for the whole batch, so a primary key
    with a per-row default (a UUID) must be given; an auto-increment key left out is the
    database's to fill. No model instances and no signals, as with bulk_create.

    On PostgreSQL this is one `INSERT ... SELECT FROM unnest()`: one array per column that varies
    and one bound value per column that does not. Django's bulk_create sends a placeholder per
    column and row (26,000 for 1,000 jobs) and builds an instance per row; together those were
    most of a scheduler batch. Elsewhere (SQLite) it is bulk_create.
    """
    count = len(next(iter(columns.values()))) if columns else 0
    if count == 0:
        return 0
    if any(len(values) != count for values in columns.values()):
        raise ValueError("bulk_insert: every column needs one value per row")
    fields = [f for f in model._meta.concrete_fields if f.attname in columns or not f.primary_key]
    unknown = set(columns) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"bulk_insert: {model.__name__} has no column(s) {sorted(unknown)}")
    same = {f.attname: f.get_default() for f in fields if f.attname not in columns}
    if connection.vendor != "postgresql":
        rows = [{name: values[i] for name, values in columns.items()} for i in range(count)]
        model.objects.bulk_create([model(**same, **row) for row in rows], batch_size=500)
        return count
    varying: list[models.Field] = []  # the columns sent as arrays
    for f in fields:
        if f.attname in columns:
            values = columns[f.attname]
            first = values[0]
            if all(v == first for v in values):
                same[f.attname] = first
            else:
                varying.append(f)
    if not varying:  # unnest needs one array: the first column, repeated
        varying.append(fields[0])
        same.pop(fields[0].attname)
    select, params = [], []
    for f in fields:
        if f.attname not in same:
            select.append(f"r.{connection.ops.quote_name(f.column)}")
        else:
            select.append(f"%s::{f.db_type(connection)}")
            params.append(_adapt(f, same[f.attname]))
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in varying)
    params += [[_adapt(f, v) for v in columns[f.attname]] for f in varying]
    names = ", ".join(connection.ops.quote_name(f.column) for f in varying)
    targets = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    query = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({targets}) "
        f"SELECT {', '.join(select)} FROM unnest({arrays}) AS r({names})"
    )
    _execute_binary(query, params)
    return count


def _adapt(field: models.Field, value: Any) -> Any:
    """A value as psycopg should bind it; only JSON needs wrapping (PostgreSQL only)."""
    if isinstance(field, models.JSONField) and value is not None:
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    return value


def bulk_update(model: type[models.Model], pks: Sequence[Any], columns: Mapping[str, Sequence[Any]]) -> None:
    """Set each row's columns (`{attname: [value per row]}`, in the order of `pks`).

    On PostgreSQL one `UPDATE ... FROM unnest()`: Django's bulk_update builds a CASE per row and
    column, about half a second of Python per 1,000 rows. Elsewhere one UPDATE per row.
    """
    if not pks:
        return
    if any(len(values) != len(pks) for values in columns.values()):
        raise ValueError("bulk_update: every column needs one value per row")
    fields = [model._meta.get_field(name) for name in columns]
    if connection.vendor != "postgresql":
        for i, pk in enumerate(pks):
            model.objects.filter(pk=pk).update(**{f.name: columns[f.attname][i] for f in fields})
        return
    pk = model._meta.pk
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = r.{quote(f.column)}" for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in [pk, *fields])
    names = ", ".join(quote(f.column) for f in [pk, *fields])
    table, key = quote(model._meta.db_table), quote(pk.column)
    _execute_binary(
        f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS r({names}) WHERE {table}.{key} = r.{key}",
        [list(pks), *([_adapt(f, v) for v in columns[f.attname]] for f in fields)],
    )


def _execute_binary(query: str, params: list[Any]) -> None:
    """Run one statement with server-side binding and binary dumping (PostgreSQL only).

    Django's client-side cursor quotes every array element through a regex: a third of the cost
    of a 1,000-row insert.
    """
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(query, params, binary=True)
