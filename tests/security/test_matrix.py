"""Every API route × every kind of caller → the status the README's order of checks gives (The API).

Routes that take a body run once per Content-Type the parser accepts (tests/security/
content_types.py): `application/*` or `*/*` must get exactly what `application/json` gets.

Callers, in the order the checks run: no token, a bad token, a revoked one, an expired one (401);
a token without the route's scope (403 naming it, before any lookup); an admin of another
workspace addressing this workspace's objects (404); a member of this workspace (403 on admin-only
routes and on others' agent schedules, 404 on objects only their owner may read); the workspace
admin (the happy path). Refused callers write nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from hq import clock, scopes, services
from hq.models import Note, PersonalAccessToken, Room, RoomMessage, StoredQuery
from queueapp import services as queue_services
from queueapp.models import HITLRequest, Job, QueuePause
from schedules import services as schedule_services
from schedules.models import Schedule, ScheduleFire
from tests import factories
from tests.security import world as world_mod
from tests.security.content_types import ACCEPTED

pytestmark = pytest.mark.django_db


def _task_body(w: world_mod.World) -> dict:
    return {
        "name": "weekly",
        "schedule": "0 9 * * MON",
        "timezone": "Europe/Amsterdam",
        "action": "send_message",
        "args": {"room_id": str(w.room.id), "content": {"msgtype": "swp.text", "body": "Hi"}},
    }


def _schedule_body(w: world_mod.World) -> dict:
    return {"name": "digest 2", "trigger": dict(world_mod.CRON), "prompt": "Go.", "deliver_to": {"kind": "web_inbox"}}


def _rename(w: world_mod.World) -> dict:
    return {"name": "renamed"}


def _archive(w: world_mod.World) -> None:
    schedule_services.schedule_archive(schedule=w.schedule, actor=w.admin.user)


def _cancel_job(w: world_mod.World) -> None:
    queue_services.job_cancel(job=w.job, actor=w.admin.user)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str | None
    admin: int
    member: int
    #: An admin of another workspace addressing this one's object: 404. None: not an object route.
    other: int | None = None
    body: Callable[[world_mod.World], dict] | None = None
    prepare: Callable[[world_mod.World], None] | None = None
    query: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


R = Route
ROUTES = [
    R("GET", "/v1/me", None, 200, 200),
    # rooms and notes
    R("GET", "/v1/rooms", "rooms:read", 200, 200),
    R("POST", "/v1/rooms", "rooms:write", 201, 201, body=lambda w: {"name": "new room"}),
    R("GET", "/v1/rooms/{room_id}", "rooms:read", 200, 200, other=404),
    R("GET", "/v1/rooms/{room_id}/messages", "rooms:read", 200, 200, other=404),
    R("POST", "/v1/rooms/{room_id}/messages", "rooms:write", 201, 201, other=404, body=lambda w: {"body": "hi"}),
    R("GET", "/v1/notes", "notes:read", 200, 200),
    R("POST", "/v1/notes", "notes:write", 201, 201, body=lambda w: {"title": "t"}),
    R("GET", "/v1/notes/queries", "notes:read", 200, 200),
    R("POST", "/v1/notes/queries", "notes:write", 201, 201, body=lambda w: {"name": "q"}),
    R("GET", "/v1/notes/queries/{query_id}/results", "notes:read", 200, 200, other=404),
    R("GET", "/v1/api/conversations", "conversations:read", 200, 200),
    R("GET", "/v1/api/conversations/{conversation_id}", "conversations:read", 200, 404, other=404),
    # queue
    R("GET", "/v1/queue/jobs", "queue:read", 200, 200),
    R("POST", "/v1/queue/jobs", "queue:write", 202, 202, body=lambda w: {"function": "hq.echo", "args": {}}),
    R("POST", "/v1/queue/jobs/batch", "queue:write", 202, 202, body=lambda w: {"jobs": [{"function": "hq.echo"}]}),
    R("GET", "/v1/queue/jobs/{job_id}", "queue:read", 200, 404, other=404),
    R("GET", "/v1/queue/jobs/{job_id}/events", "queue:read", 200, 404, other=404),
    R("POST", "/v1/queue/jobs/{job_id}/cancel", "queue:write", 200, 404, other=404),
    R("POST", "/v1/queue/jobs/{job_id}/retry", "queue:write", 200, 404, other=404, prepare=_cancel_job),
    R("GET", "/v1/queue/correlation/{correlation_id}", "queue:read", 200, 200),
    R("GET", "/v1/queue/depth", "queue:read", 200, 200),
    R("GET", "/v1/queue/depth/keys", "queue:read", 200, 200),
    R("GET", "/v1/queue/functions", "queue:read", 200, 200),
    R("GET", "/v1/queue/workers", "queue:read", 200, 403),
    R("GET", "/v1/queue/observability/summary", "queue:read", 200, 403),
    R("POST", "/v1/queue/queues/{queue}/pause", "queue:write", 200, 403),
    R("POST", "/v1/queue/queues/{queue}/resume", "queue:write", 200, 403),
    R("GET", "/v1/queue/hitl", "queue:read", 200, 200),
    R("GET", "/v1/queue/hitl/{request_id}", "queue:read", 200, 200, other=404),
    # The member requested it: deciding one's own request is refused (self-approval).
    R("POST", "/v1/queue/hitl/{request_id}/approve", "hitl:approve", 200, 403, other=404, body=lambda w: {}),
    R("POST", "/v1/queue/hitl/{request_id}/reject", "hitl:approve", 200, 403, other=404, body=lambda w: {}),
    # scheduled tasks
    R("GET", "/v1/scheduled-tasks", "scheduled_tasks:read", 200, 200),
    R("POST", "/v1/scheduled-tasks", "scheduled_tasks:write", 201, 201, body=_task_body),
    R("GET", "/v1/scheduled-tasks/{task_id}", "scheduled_tasks:read", 200, 404, other=404),
    R("PATCH", "/v1/scheduled-tasks/{task_id}", "scheduled_tasks:write", 200, 404, other=404, body=_rename),
    R("DELETE", "/v1/scheduled-tasks/{task_id}", "scheduled_tasks:write", 204, 404, other=404),
    # agent schedules: the admin owns it; a member may not read it (404) nor change it (403)
    R("GET", "/v1/api/schedules", "schedules:read", 200, 200),
    R("GET", "/v1/api/schedules", "schedules:read", 200, 403, query={"scope": "workspace"}),
    R("POST", "/v1/api/schedules", "schedules:write", 201, 201, body=_schedule_body),
    R("GET", "/v1/api/schedules/owners", "schedules:read", 200, 403),
    R("GET", "/v1/api/schedules/{schedule_id}", "schedules:read", 200, 404, other=404),
    R("PATCH", "/v1/api/schedules/{schedule_id}", "schedules:write", 200, 403, other=404, body=_rename),
    R("DELETE", "/v1/api/schedules/{schedule_id}", "schedules:write", 200, 403, other=404),
    R("POST", "/v1/api/schedules/{schedule_id}/pause", "schedules:write", 200, 403, other=404),
    R("POST", "/v1/api/schedules/{schedule_id}/resume", "schedules:write", 200, 403, other=404),
    R("POST", "/v1/api/schedules/{schedule_id}/fire_now", "schedules:write", 200, 403, other=404),
    R("DELETE", "/v1/api/schedules/{schedule_id}/erase", "schedules:write", 200, 403, other=404, prepare=_archive),
]


def test_the_table_covers_every_route():
    """A new route needs a row here (and its answers for every caller)."""
    served = {
        (method.upper(), path)
        for path, ops in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
        for method in ops
    }
    assert served == {(r.method, r.path) for r in ROUTES}


def _counts() -> dict[str, int]:
    models = (Job, HITLRequest, QueuePause, Schedule, ScheduleFire, Room, RoomMessage, Note, StoredQuery)
    counts = {m.__name__: m.objects.count() for m in models}
    counts["decided"] = HITLRequest.objects.exclude(state="pending").count()
    counts["not_queued"] = Job.objects.exclude(state="queued").count()
    counts["not_active"] = Schedule.objects.exclude(state="active").count()
    counts["names"] = hash(tuple(Schedule.objects.order_by("id").values_list("name", flat=True)))
    return counts


def _token(caller: factories.Caller, **changes: Any) -> str:
    """A further token of the caller's user, with `scopes` and other fields as given."""
    scopes_ = changes.pop("scopes", None)
    issued = services.token_create(user=caller.user, workspace=caller.workspace, scopes=scopes_)
    if changes:
        PersonalAccessToken.objects.filter(pk=issued.token.pk).update(**changes)
    return issued.clear


CASES = [(route, ct) for route in ROUTES for ct in (ACCEPTED if route.body else ACCEPTED[:1])]


def _case_id(route: Route, content_type: str) -> str:
    query = f"?{route.query}" if route.query else ""
    return f"{route.id}{query}" + ("" if content_type == ACCEPTED[0] else f" [{content_type}]")


@pytest.mark.parametrize(("route", "content_type"), CASES, ids=[_case_id(r, ct) for r, ct in CASES])
def test_route_answers_each_caller(api, route: Route, content_type: str):
    w = world_mod.build()
    if route.prepare:
        route.prepare(w)
    real = w.path_values()
    path = route.path.format(**real)
    body = route.body(w) if route.body else None
    problems: list[str] = []

    def call(who: str, token: str | None, expected: int, url: str = path) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        if route.query:
            url = f"{url}?{'&'.join(f'{k}={v}' for k, v in route.query.items())}"
        data = "" if body is None else json.dumps(body)
        resp = api.generic(route.method, url, data, content_type, **headers)
        if resp.status_code != expected:
            problems.append(f"{who}: expected {expected}, got {resp.status_code} {resp.content[:200]!r}")
        elif resp.status_code >= 400:
            error = resp.json().get("error")
            if not (isinstance(error, dict) and {"code", "message", "fields", "detail"} <= set(error)):
                problems.append(f"{who}: not the error envelope: {resp.content[:200]!r}")
        return resp

    before = _counts()
    resp = call("no token", None, 401)
    if resp.status_code == 401 and not resp.get("WWW-Authenticate", "").startswith("Bearer"):
        problems.append("no token: no WWW-Authenticate: Bearer header")
    call("bad token", "hq_pat_" + "x" * 43, 401)
    call("revoked token", _token(w.admin, revoked_at=clock.now()), 401)
    call("expired token", _token(w.admin, expires_at=clock.now() - timedelta(seconds=1)), 401)
    if route.scope:
        narrowed = _token(w.admin, scopes=[s for s in scopes.ALL_SCOPES if s != route.scope])
        # Before any lookup: an id that matches nothing still answers 403, not 404.
        unknown = route.path.format(**{k: (str(uuid.uuid4()) if k.endswith("_id") else v) for k, v in real.items()})
        for url in {path, unknown}:
            resp = call(f"missing {route.scope} ({url})", narrowed, 403, url)
            if resp.status_code == 403 and resp.json()["error"]["detail"].get("scope") != route.scope:
                problems.append(f"missing scope: detail.scope is not {route.scope}: {resp.content[:200]!r}")
    if route.other is not None:
        call("admin of another workspace", factories.caller(admin=True).token, route.other)
    if _counts() != before:
        problems.append(f"a refused caller changed something: {before} -> {_counts()}")

    call("member", w.member.token, route.member)
    call("admin", w.admin.token, route.admin)
    assert not problems, "\n".join(problems)
