"""A plugin's schedule action: registered from its hq_plugin module, validated and fired like a built-in."""

from __future__ import annotations

import pytest

from hq import redis as hq_redis
from schedules import services
from schedules.models import ScheduleFire

pytestmark = pytest.mark.django_db(transaction=True)


def test_plugin_action_is_validated_and_runs_on_a_worker(api, member, burst):
    body = {
        "name": "tally",
        "schedule": "*/5 * * * *",
        "timezone": "UTC",
        "action": "tests.tally",
        "args": {"counter": "visits", "step": 3},
    }
    bad = api.post(
        "/v1/scheduled-tasks", {**body, "args": {"counter": "no spaces allowed"}}, format="json", **member.headers
    )
    assert bad.status_code == 400 and "args.counter" in bad.json()["error"]["fields"]
    resp = api.post("/v1/scheduled-tasks", body, format="json", **member.headers)
    assert resp.status_code == 201, resp.content
    task = services.Schedule.objects.get(pk=resp.json()["id"])
    for _ in range(2):
        services.schedule_fire_now(schedule=task, actor=member.user)
        burst()
    assert int(hq_redis.client().get(hq_redis.key("tally", "visits"))) == 6
    assert list(ScheduleFire.objects.values_list("status", flat=True)) == ["succeeded", "succeeded"]
