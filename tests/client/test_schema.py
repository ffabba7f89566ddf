"""The client against the live `/v1/schema`: every operation has a method, every method an
operation, every list method the list key HQ answers with, and every result type HQ's fields."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import httpx
import pytest
from hq_client import types
from hq_client._core import Api, Op, PagedOp
from hq_client._operations import Operations

pytestmark = pytest.mark.django_db(transaction=True)

METHODS = ("get", "post", "put", "patch", "delete")

#: Each result type and the schema component it mirrors.
COMPONENTS: dict[type, str] = {
    types.Job: "JobOut",
    types.SubmittedJob: "JobSubmitOut",
    types.BatchJob: "JobBatchItemOut",
    types.JobEvent: "JobEventOut",
    types.JobSubmission: "JobSubmitInRequest",
    types.HITLRequest: "HITLRequestOut",
    types.ScheduledTask: "TaskOut",
    types.AgentSchedule: "ScheduleOut",
    types.ScheduleChange: "OkNext",
    types.ScheduleOwner: "Owner",
    types.Room: "RoomOut",
    types.Message: "MessageOut",
    types.Note: "NoteOut",
    types.StoredQuery: "StoredQueryOut",
    types.StoredQueryResults: "StoredQueryResults",
    types.Conversation: "ConversationOut",
    types.ConversationMessage: "ConversationMessageOut",
    types.ConversationDetail: "ConversationDetailOut",
    types.QueueDepth: "DepthOut",
    types.KeyDepth: "KeyDepthOut",
    types.QueueState: "QueueStateOut",
    types.FunctionInfo: "FunctionOut",
    types.Worker: "WorkerOut",
    types.ObservabilitySummary: "ObservabilitySummary",
    types.Me: "Me",
}


@pytest.fixture
def schema(hq_url) -> dict[str, Any]:
    answer = httpx.get(f"{hq_url}/v1/schema", params={"format": "json"}, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def client_operations() -> dict[tuple[str, str], list[str]]:
    """(METHOD, path) of every client method that calls one operation, to the methods' names."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, value in vars(Operations).items():
        if isinstance(value, Op | PagedOp):
            found.setdefault((value.method, value.path), []).append(name)
    return found


def schema_operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_operation_has_a_client_method_and_every_method_an_operation(schema):
    served = schema_operations(schema)
    ours = client_operations()
    missing = sorted(f"{m} {p} ({served[(m, p)]['operationId']})" for m, p in set(served) - set(ours))
    assert not missing, f"operations with no client method: {missing}"
    unknown = sorted(f"{m} {p}: {names}" for (m, p), names in ours.items() if (m, p) not in served)
    assert not unknown, f"client methods for operations HQ does not have: {unknown}"
    assert len(served) >= 45  # the walk saw the whole API, not an empty schema


def _dummy_call(build: Any) -> tuple[list[Any], dict[str, Any]]:
    """Arguments for a builder's required parameters (the route aside): strings will do for a path."""
    params = list(inspect.signature(build).parameters.values())[1:]
    args = [f"x-{p.name}" for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: f"x-{p.name}" for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY}
    return args, kwargs


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_every_list_method_reads_the_list_key_and_pages_hq_answers_with(schema):
    served = schema_operations(schema)
    api = Api(base_url="http://hq.invalid", token="t")
    checked = 0
    for name, value in vars(Operations).items():
        if not isinstance(value, PagedOp):
            continue
        args, kwargs = _dummy_call(value.build)
        listing = value.listing(api, *args, **kwargs)
        operation = served[(value.method, value.path)]
        body = _resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
        properties = body["properties"]
        assert listing.key in properties, f"{name}: HQ's page has no {listing.key!r} (it has {sorted(properties)})"
        assert {"total", "limit", "offset"} <= set(properties), name
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {"limit", "offset"} <= query, f"{name}: the operation takes no limit/offset"
        filters = {p.name for p in inspect.signature(value.build).parameters.values() if p.kind is p.KEYWORD_ONLY}
        assert filters <= query, f"{name}: filters HQ does not take: {filters - query}"
        checked += 1
    assert checked >= 12


def test_every_result_type_has_the_fields_hq_answers_with(schema):
    components = schema["components"]["schemas"]
    for cls, component in COMPONENTS.items():
        ours = set(typing.get_type_hints(cls))
        theirs = set(components[component]["properties"])
        assert ours == theirs, f"{cls.__name__} vs {component}: only ours {ours - theirs}, only HQ's {theirs - ours}"


def test_every_submit_field_of_the_batch_items_is_a_submit_field(schema):
    components = schema["components"]["schemas"]
    item = _resolve(schema, components["JobBatchInRequest"]["properties"]["jobs"]["items"])
    assert set(item["properties"]) == set(typing.get_type_hints(types.JobSubmission))
