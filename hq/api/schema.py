"""The OpenAPI schema as the API really answers: list keys, error envelopes and bearer auth.

Enable with `REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "hq.api.schema.AutoSchema"`. It must be set
in settings (not later): `@extend_schema` subclasses the schema class when a view module is imported.

- A paginated list is `{"<plural>": [...], "total", "limit", "offset"}`. The plural is the list's
  serializer's `results_key` (e.g. `JobEventOut.results_key = "events"`), else the view's
  `results_key`; a list view that has either is documented as paginated, with `limit`/`offset`.
- Every operation documents the error envelope for the 4xx statuses it can answer.
- `TokenAuthentication` is documented as HTTP bearer.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, is_list_serializer
from drf_spectacular.utils import Direction, OpenApiParameter, OpenApiResponse

from hq.api.pagination import LimitOffset
from hq.api.permissions import required_scope

# `limit` and `offset` as the paginator documents them, for views that page by hand.
PAGE_PARAMETERS = [
    OpenApiParameter(param["name"], param["schema"], required=False)
    for param in LimitOffset().get_schema_operation_parameters(None)
]

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The envelope of every 4xx and 5xx answer.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields", "detail"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "Invalid input. name: This field is required."},
                "fields": {
                    "type": "object",
                    "description": "Field (nested ones dotted) to messages.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "detail": {
                    "type": "object",
                    "description": "Facts a client acts on: `state` (409), `limit` and `current` (402), "
                    "`scope` (403), `retry_after_s` (429).",
                    "additionalProperties": True,
                },
            },
        }
    },
}

ERROR_DESCRIPTIONS = {
    400: "Invalid input: body, query or path (`fields` names each problem).",
    401: "Missing, unknown, expired or revoked token.",
    402: "The workspace's plan limit is reached (`detail.limit`, `detail.current`).",
    403: "The token lacks a scope (`detail.scope`), or the caller's role may not do this.",
    404: "No such object, or not one the caller may read.",
    409: "The object's current state does not allow this (`detail.state`).",
    413: "The body is over the size limit.",
    415: "The body is not JSON.",
    429: "Too many requests (or failed authentications); see `Retry-After`.",
}


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer hq_pat_...`."""

    target_class = "hq.api.auth.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hq_pat_...",
            "description": "A personal access token (`manage.py create_token`, or the admin).",
        }


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema with HQ's list shape and error envelope."""

    def _main_response_serializer(self) -> Any:
        serializers = self.get_response_serializers()
        if isinstance(serializers, dict):
            ok = sorted(str(code) for code in serializers if str(code).startswith("2"))
            if not ok:
                return None
            serializers = {str(code): s for code, s in serializers.items()}[ok[0]]
        if isinstance(serializers, OpenApiResponse):
            serializers = serializers.response
        return force_instance(serializers)

    def results_key(self) -> str | None:
        """The list's key in a paginated response, or None when the operation is not paginated."""
        serializer = self._main_response_serializer()
        child = serializer.child if is_list_serializer(serializer) else serializer
        return getattr(child, "results_key", None) or getattr(self.view, "results_key", None)

    def _get_paginator(self) -> Any:
        key = self.results_key()
        if key:
            return LimitOffset(results_key=key)
        return super()._get_paginator()  # type: ignore[no-untyped-call]  # unannotated in drf-spectacular

    def error_statuses(self) -> list[int]:
        """The 4xx statuses this operation can answer (400, 401 and 429 on every route)."""
        statuses = {400, 401, 429}
        method = self.method.upper()
        if required_scope(self.view, method):
            statuses.add(403)
        if "{" in self.path or method in ("POST", "PUT", "PATCH"):
            statuses.add(404)  # the object addressed, or one a body refers to (an agent, a room)
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            statuses.update({403, 409})
        if method in ("POST", "PUT", "PATCH"):
            statuses.update({413, 415})
        return sorted(statuses)

    def _get_response_bodies(self, direction: Direction = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        component = ResolvedComponent(
            name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT, schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        for status in self.error_statuses():
            responses.setdefault(
                str(status),
                {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": component.ref}}},
            )
        # An explicit error response (e.g. 402 in @extend_schema) documents the envelope too.
        for code, response in responses.items():
            if code[0] in "45" and "content" not in response:
                response["content"] = {"application/json": {"schema": component.ref}}
        return responses
