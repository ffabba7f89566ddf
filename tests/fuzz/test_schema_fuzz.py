"""Schemathesis against HQ's own OpenAPI schema, in process, for every operation.

Every operation gets positive and negative examples (HQ_FUZZ_EXAMPLES each) as a workspace admin
holding every scope, with path parameters that often address real objects, and each body sent
with one of the Content-Types the parser accepts (`application/json`, `application/*`, `*/*`...),
drawn per example. Checks: no 5xx, every
4xx is the error envelope, status codes, content types, headers and bodies match the schema, and
an operation that answers 2xx with the token refuses the same request without it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hq.api.schema import AutoSchema
from tests.security import world as world_mod
from tests.security.content_types import ACCEPTED

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("HQ_FUZZ_EXAMPLES", "5"))
PROFILE = os.environ.get("HQ_FUZZ_PROFILE", "ci")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, from the same generator /v1/schema serves."""
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


OPERATIONS = _operations()
_cache: dict[str, Any] = {}


def test_the_schema_class_is_hqs():
    """Without it the schema lists `results`, no error envelopes and no bearer auth (see hq/api/schema.py)."""
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_SCHEMA_CLASS is AutoSchema, (
        'settings.REST_FRAMEWORK needs "DEFAULT_SCHEMA_CLASS": "hq.api.schema.AutoSchema"'
    )


LIST_KEYS = {
    "/v1/queue/jobs": "jobs",
    "/v1/queue/jobs/{job_id}/events": "events",
    "/v1/queue/hitl": "requests",
    "/v1/queue/correlation/{correlation_id}": "jobs",
    "/v1/rooms": "rooms",
    "/v1/rooms/{room_id}/messages": "messages",
    "/v1/notes": "notes",
    "/v1/notes/queries": "queries",
    "/v1/api/conversations": "conversations",
    "/v1/scheduled-tasks": "tasks",
    "/v1/api/schedules": "schedules",
}


def test_the_schema_documents_list_keys_errors_and_auth():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    def resolve(ref: dict) -> dict:
        return components[ref["$ref"].rsplit("/", 1)[1]] if "$ref" in ref else ref

    for path, key in LIST_KEYS.items():
        op = schema["paths"][path]["get"]
        body = resolve(op["responses"]["200"]["content"]["application/json"]["schema"])
        assert {key, "total", "limit", "offset"} <= set(body["required"]), (path, body)
        assert "results" not in body["properties"], path
        assert {"limit", "offset"} <= {p["name"] for p in op["parameters"] if p["in"] == "query"}, path
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        **schema["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert {"400", "401", "429"} <= set(op["responses"]), (method, path)
            for code, response in op["responses"].items():
                if code[0] in "45":
                    ref = response["content"]["application/json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/Error"}, (method, path, code)


@pytest.fixture
def in_process(db, settings) -> Any:
    """Django's WSGI app called in this thread (inside the test's transaction): connections stay open."""
    # Negative examples send invalid tokens; the per-IP failure throttle would turn later ones into 429s.
    settings.HQ_AUTH_FAILURE_RATE = "1000000/min"
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield WSGIHandler()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def world(db) -> world_mod.World:
    return world_mod.build()


@pytest.fixture
def api_schema(in_process, world) -> Any:
    """The schema /v1/schema serves, loaded once per process with an admin's token."""
    if "schema" not in _cache:
        schema = schemathesis.openapi.from_wsgi(
            "/v1/schema?format=json", in_process, headers={"Authorization": f"Bearer {world.admin.token}"}
        )
        _cache["schema"] = schema
    schema = _cache["schema"]
    schema.app = in_process
    return schema


def _task_args(world: world_mod.World) -> dict:
    return {"room_id": str(world.room.id), "content": {"msgtype": "swp.text", "body": "Status?"}}


def _fix(body: dict, world: world_mod.World, **values: Any) -> None:
    """Set the keys a generated body already has to valid values."""
    for key, value in values.items():
        if key in body:
            body[key] = value


# Generated bodies rarely name a registered function, a parsable cron or a room of the workspace;
# in positive mode most examples get these few values made valid, so successful answers (and
# their schemas) are checked too. Everything else stays as generated.
FIXUPS = {
    ("POST", "/v1/queue/jobs"): lambda b, w: b.update(function="hq.echo"),
    ("POST", "/v1/rooms"): lambda b, w: _fix(b, w, members=[str(w.member.user.pk)], agent_id=None),
    ("POST", "/v1/scheduled-tasks"): lambda b, w: b.update(
        schedule="0 9 * * MON", timezone="Europe/Amsterdam", action="send_message", args=_task_args(w)
    ),
    ("PATCH", "/v1/scheduled-tasks/{task_id}"): lambda b, w: _fix(
        b, w, schedule="*/5 * * * *", timezone="UTC", args=_task_args(w)
    ),
    ("POST", "/v1/api/schedules"): lambda b, w: b.update(
        trigger=dict(world_mod.CRON), deliver_to={"kind": "web_inbox"}, agent_id=None, delivery_locale="en-US"
    ),
    ("PATCH", "/v1/api/schedules/{schedule_id}"): lambda b, w: _fix(
        b, w, trigger={"kind": "cron", "expr": "30 7 * * *", "tz": "UTC"}, args={"prompt": "Again."}
    ),
}


def _operation(schema: Any, method: str, path: str) -> Any:
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == method and op.path == path:
            return op
    raise AssertionError(f"{method} {path} is not in the served schema")


def assert_envelope(response: Any) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{response.status_code} not an envelope: {body}"
    error = body["error"]
    assert {"code", "message", "fields", "detail"} <= set(error), error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict) and isinstance(error["detail"], dict), error


def test_every_operation_is_fuzzed():
    assert len(OPERATIONS) >= 40, OPERATIONS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(api_schema, world, method, path, mode):
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 4xx warnings; a 5xx fails the check
    op = _operation(api_schema, method, path)
    real = world.path_values()
    headers = {"Authorization": f"Bearer {world.admin.token}"}
    checks = [*CHECKS, ignored_auth] if mode is GenerationMode.POSITIVE else CHECKS

    @settings(settings.get_profile(PROFILE), max_examples=EXAMPLES, database=None)
    @given(
        case=op.as_strategy(generation_mode=mode), use_real=st.integers(0, 3), content_type=st.sampled_from(ACCEPTED)
    )
    def run(case: Any, use_real: int, content_type: str) -> None:
        if use_real and case.path_parameters:
            for name in case.path_parameters:
                if name in real:
                    case.path_parameters[name] = real[name]
        fixup = FIXUPS.get((method, path))
        if use_real and fixup and mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            fixup(case.body, world)
        sent = headers
        if case.body is not NOT_SET and case.media_type == "application/json":
            sent = {**headers, "Content-Type": content_type}
        response = case.call(headers=sent)
        case.validate_response(response, checks=checks, headers=sent)
        assert_envelope(response)

    run()
