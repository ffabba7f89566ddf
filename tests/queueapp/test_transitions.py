"""One state machine, three executors: the same moves leave the same rows and events in each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from queueapp import store, transitions
from tests.conftest import ROOT
from tests.queueapp.transition_sequences import record

pytestmark = pytest.mark.django_db(transaction=True)


def _sqlite_record(tmp_path: Any) -> dict[str, Any]:
    """The sequence's record on SQLite, where the worker's store is the ORM store (`make run`)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hq.test_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        "HQ_CLOCK_OFFSET_S": "0",
    }
    out = ""
    for args in (
        ["migrate", "-v", "0"],
        ["shell", "-c", "from tests.queueapp.transition_sequences import main; main()"],
    ):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
    return json.loads(out.strip().splitlines()[-1])


def test_every_executor_leaves_the_same_rows_and_events(tmp_path):
    records = {
        "batched psycopg store": json.loads(json.dumps(record(store.PgStore()))),
        "ORM store on PostgreSQL": json.loads(json.dumps(record(store.OrmStore()))),
        "ORM store on SQLite": _sqlite_record(tmp_path),
    }
    (first, expected), *others = records.items()
    for name, other in others:
        assert other["answers"] == expected["answers"], f"{name} answered otherwise than the {first}"
        assert other["jobs"].keys() == expected["jobs"].keys()
        for label, job in expected["jobs"].items():
            assert other["jobs"][label]["row"] == job["row"], f"job {label!r}: {name} vs {first}"
            assert other["jobs"][label]["events"] == job["events"], f"job {label!r}: {name} vs {first}"

    # The sequence is worth comparing: it makes every move, and ends where it should.
    moved = {(e["from_state"], e["to_state"]) for job in expected["jobs"].values() for e in job["events"]}
    for name, move in transitions.MOVES.items():
        assert any((source, move.target) in moved for source in move.sources), f"the sequence never makes {name!r}"
    states = {label: job["row"]["state"] for label, job in expected["jobs"].items()}
    assert states == {
        "retried": "succeeded",
        "cancelled": "succeeded",
        "aborted": "cancelled",
        "raced": "cancelled",
        "raced_last": "cancelled",
        "deferred": "succeeded",
        "lost": "failed",
        "lost_cancelled": "cancelled",
        "approved": "succeeded",
        "rejected": "awaiting_approval",
    }
    # A cancel asked for while the attempt ran wins over the end the worker reported without a result.
    finishes = [tuple(a[1:]) for a in expected["answers"] if a[0] == "finish"]
    assert ("raced", 1, "retry_later", "cancel_running") in finishes
    assert ("raced_last", 1, "fail", "cancel_running") in finishes
    assert ("retried", 2, "succeed", "succeed") in finishes and ("retried", 2, "fail", None) in finishes  # late
    raced = expected["jobs"]["raced"]
    assert raced["events"][-1]["kind"] == "cancelled" and "retry_in_s" not in raced["events"][-1]["detail"]
    assert raced["row"]["dispatched_at"] is None and raced["row"]["finished_at"] is not None
    starts = [answer[1:] for answer in expected["answers"] if answer[0] == "start"]
    refused = [(label, attempt) for label, attempt, started in starts if not started]
    assert refused == [
        *[("retried", 2), ("retried", 1), ("retried", 2)],  # not the next attempt; started already; not due
        ("cancelled", 1),
        ("raced", 2),  # cancelled
        *[("deferred", 1), ("deferred", 1)],  # not due; paused
        ("approved", 1),  # awaiting its decision
    ]


def test_worker_sql_is_generated_from_the_moves():
    start, finish = transitions.MOVES["start"], transitions.MOVES["succeed"]
    assert "(j.state = 'queued' OR (j.state = 'deferred' AND j.due_at <= %(now)s))" in transitions.START_SQL
    assert f"SET state = '{start.target}'" in transitions.START_SQL
    assert "state IN ('queued', 'deferred')" in transitions.UNMARK_SQL
    assert f"j.state = '{finish.sources[0]}'" in transitions.FINISH_SQL
    assert transitions.FINISH_SOURCE == "running"
