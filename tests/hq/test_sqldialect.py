"""hq.sqldialect: the ops views' SQL gives the same numbers on PostgreSQL and on SQLite (`make run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from hq import services
from hq.sqldialect import FRACTIONS, interpolate
from queueapp.observability import Scope, finished_series, panels, summary, wait_series
from tests.conftest import ROOT
from tests.observability.helpers import fire, job, schedule

NOW = datetime(2026, 3, 29, 12, 34, 56, 789000, tzinfo=UTC)


def world_numbers(now: datetime) -> dict[str, Any]:
    """Write known rows, then return what the summary and the dashboard compute from them.

    Waits and runs are whole hundreds of ms, so every percentile is exact to the summary's 0.1 ms
    on both databases (SQLite subtracts Julian days, about 0.05 ms apart at today's dates).
    """
    ws = services.workspace_get_or_create(slug_or_name="dialect")[0]
    user, _ = services.user_get_or_create(email="dialect@example.com")
    for i, (wait, run) in enumerate(((100, 1000), (300, 2000), (800, 500), (1200, 4000))):
        job(ws, now, state="succeeded", finished_ago_s=30 + 700 * i, wait_ms=wait, run_ms=run)
    job(ws, now, state="failed", finished_ago_s=5000, wait_ms=2000, run_ms=700, queue="mail", function="mail.send")
    job(ws, now, state="cancelled", finished_ago_s=90)
    job(ws, now, state="queued", due_ago_s=12)
    job(ws, now, state="deferred", due_ago_s=-60)
    job(ws, now, state="running", started_ago_s=4, wait_ms=600)
    s = schedule(ws, user, name="digest")
    for ago_s, lag in ((60, 100), (4000, 400), (9000, 900)):
        fire(s, now, created_ago_s=ago_s, status="succeeded", lag_ms=lag)
    scope = Scope.of([ws.pk], now)
    body = summary(workspace_ids=[ws.pk], now=now)
    return {
        "queues": body["queues"],
        "fires": body["schedules"]["windows"],
        "wait_series": wait_series(scope, step_s=3600, n=24)[1],
        "finished_series": finished_series(scope, step_s=900, n=96)[1],
        "panels": [panel.title for source in panels() for panel in source(scope)],
    }


PROBE = f"""
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from datetime import datetime
from tests.hq.test_sqldialect import world_numbers
print(json.dumps(world_numbers(datetime.fromisoformat({NOW.isoformat()!r}))))
"""


@pytest.mark.django_db
def test_summary_and_series__sqlite_matches_postgresql(tmp_path):
    assert connection.vendor == "postgresql"
    on_postgresql = json.loads(json.dumps(world_numbers(NOW)))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hq.test_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hq.sqlite3'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr
    on_sqlite = json.loads(out.stdout.strip().splitlines()[-1])
    assert on_sqlite == on_postgresql
    default = next(q for q in on_postgresql["queues"] if q["queue"] == "default")
    # the four finished in the hour and the running one (600)
    assert default["windows"]["1h"]["wait_ms"] == {"p50": 600.0, "p95": 1120.0, "p99": 1184.0}


@pytest.mark.django_db
@pytest.mark.parametrize("values", [[7.0], [1.0, 2.0], [3.0, 1.0, 10.0, 4.0], [float(v * v) for v in range(37)]])
def test_interpolate__is_postgresqls_percentile_cont(values):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY v) FROM unnest(%s::float8[]) v",
            [list(FRACTIONS), values],
        )
        expected = cur.fetchone()[0]
    assert [interpolate(sorted(values), f) for f in FRACTIONS] == pytest.approx(expected)
