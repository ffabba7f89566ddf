"""Limit/offset pagination: {"<plural>": [...], "total", "limit", "offset"}."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from hq.errors import ValidationFailed

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Far beyond any real list, and inside PostgreSQL's bigint OFFSET (a larger one is a database error).
MAX_OFFSET = 1_000_000_000


def parse_page(query: Mapping[str, Any]) -> tuple[int, int]:
    """Return (limit, offset) from query parameters; 400 for anything out of range."""
    fields: dict[str, list[str]] = {}
    limit, offset = DEFAULT_LIMIT, 0
    raw_limit, raw_offset = query.get("limit"), query.get("offset")
    if raw_limit is not None and raw_limit != "":
        try:
            limit = int(raw_limit)
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except (TypeError, ValueError):
            fields["limit"] = [f"Must be an integer from 1 to {MAX_LIMIT}."]
    if raw_offset is not None and raw_offset != "":
        try:
            offset = int(raw_offset)
            if not 0 <= offset <= MAX_OFFSET:
                raise ValueError
        except (TypeError, ValueError):
            fields["offset"] = [f"Must be an integer from 0 to {MAX_OFFSET}."]
    if fields:
        raise ValidationFailed("Invalid pagination.", fields=fields)
    return limit, offset


class LimitOffset(BasePagination):
    """DRF pagination class; the view's `results_key` names the list.

    The schema (hq.api.schema.AutoSchema) builds one with the `results_key` of the operation, so the
    documented list key is the one the response carries.
    """

    def __init__(self, results_key: str = "results") -> None:
        self.results_key = results_key

    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.limit, self.offset = parse_page(request.query_params)
        self.results_key = getattr(view, "results_key", self.results_key)
        self.total = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({self.results_key: data, "total": self.total, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [self.results_key, "total", "limit", "offset"],
            "properties": {
                self.results_key: schema,
                "total": {"type": "integer", "minimum": 0, "example": 3},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "example": DEFAULT_LIMIT},
                "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "example": 0},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
            },
        ]


def paginate(
    view: Any, request: Request, rows: QuerySet[Any] | Sequence[Any], serializer: type[BaseSerializer[Any]], key: str
) -> Response:
    """Answer `rows` as one page: {key: [...], "total", "limit", "offset"}."""
    paginator = LimitOffset()
    view.results_key = key
    page = paginator.paginate_queryset(rows, request, view)
    return paginator.get_paginated_response(serializer(page, many=True).data)
