"""The remote django.tasks backend end to end: a separate Django project (a subprocess with its own
settings, no database, no HQ code) enqueues the shared tasks over HTTP to the live HQ, whose real
worker runs them (HQ discovered them in its plugin app); the project then reads the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
from hq_client import Client
from hq_client.django import HQTask

from queueapp.models import Job
from tests import factories
from tests.client.taskapp import tasks as shared
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = "tests.client.taskapp.tasks"


def remote(hq_url: str, token: str, *args: str) -> dict[str, Any]:
    """Run the remote project's script; its stdout is one JSON document."""
    env = {
        "PATH": "/usr/bin:/bin",
        # This checkout's client first (the venv's editable install may point at another checkout).
        "PYTHONPATH": os.pathsep.join((str(ROOT / "clients" / "python" / "src"), str(ROOT))),
        "HQ_URL": hq_url,
        "HQ_TOKEN": token,
        "DJANGO_SETTINGS_MODULE": "tests.client.remote_project.settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.client.remote_project.run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_separate_project_enqueues_tasks_that_hq_runs_and_reads_their_results(hq_url, caller, worker):
    sent = remote(hq_url, caller.token, "enqueue")
    assert sent["add_status"] == "READY" and sent["add_task"] == f"{TASKS}.add"
    assert sent["many_args"] == [[0, 0], [1, 1], [2, 2]]
    assert len(sent["enqueued"]) == 34 and {e["sender"] for e in sent["enqueued"]} == {"RemoteBackend"}
    assert {e["status"] for e in sent["enqueued"]} == {"READY"}
    # One task class on both sides: the remote project's tasks are HQTask, and HQ's options are
    # checked there before any request, as HQ's in-process backend checks them.
    assert sent["task_class"] == "hq_client.django.task.HQTask"
    assert sent["refused"] == ["max_tries", "approval"]
    assert (type(shared.always_fails), shared.always_fails.max_tries, shared.always_fails.retry_backoff) == (
        HQTask,
        2,
        0,
    )

    # On HQ: ordinary jobs named by the tasks' module paths, the call in their args.
    added = Job.objects.get(pk=sent["add"])
    assert added.function == f"{TASKS}.add" and added.args == {"args": [2, 3], "kwargs": {}}
    assert Job.objects.filter(function=f"{TASKS}.add").count() == 31
    assert Job.objects.get(pk=sent["shout"]).args == {"args": ["hi"], "kwargs": {"times": 2}}
    assert Job.objects.get(pk=sent["shout"]).priority == 7 and added.priority == 0

    # A colleague rejects the refund at its approval gate.
    with Client(hq_url, factories.caller(ws=caller.workspace, admin=True).token) as colleague:
        [request] = colleague.hitl_requests(job_id=sent["refund"])
        colleague.hitl_reject(request["id"], comment="not this one")

    ids = [sent["add"], sent["shout"], sent["fails"], sent["refund"], sent["many"][-1]]
    got = remote(hq_url, caller.token, "results", *ids)

    add = got[sent["add"]]
    assert add["status"] == "SUCCESSFUL" and add["return_value"] == 5 and add["errors"] == []
    assert (
        add["args"] == [2, 3] and add["kwargs"] == {} and add["task"] == f"{TASKS}.add" and add["backend"] == "default"
    )
    assert add["attempts"] == 1 and len(add["worker_ids"]) == 1 and add["worker_ids"][0].count(":") == 2
    enqueued_at, started_at, last_attempted_at, finished_at = (datetime.fromisoformat(t) for t in add["times"])
    assert enqueued_at <= started_at <= finished_at and last_attempted_at == started_at
    assert got["async"] == add  # aget_result reads the same

    assert got[sent["shout"]]["return_value"] == "HI HI"
    assert got[sent["many"][-1]]["return_value"] == 58

    fails = got[sent["fails"]]
    assert fails["status"] == "FAILED" and fails["attempts"] == 2
    assert [e["exception_class_path"] for e in fails["errors"]] == ["builtins.ValueError"] * 2
    assert all("remote boom for order 7" in e["traceback"] and "Traceback" in e["traceback"] for e in fails["errors"])

    refund = got[sent["refund"]]
    assert refund["status"] == "FAILED" and refund["attempts"] == 0
    assert refund["errors"][-1]["exception_class_path"] == "hq_client.results.TaskRejected"
    assert "not this one" in refund["errors"][-1]["traceback"]

    assert got["missing"] == ["TaskResultDoesNotExist", "TaskResultDoesNotExist"]


def test_the_backends_check_names_missing_options():
    from hq_client.django import RemoteBackend

    messages = list(RemoteBackend("remote", {"OPTIONS": {"URL": "hq.example.com", "TOKN": "x"}}).check())
    assert [m.id for m in messages] == ["hq_client.E001", "hq_client.E002", "hq_client.W001"]
    ok = RemoteBackend("remote", {"OPTIONS": {"URL": "https://hq.example.com", "TOKEN": "hq_pat_x"}})
    assert list(ok.check()) == [] and ok.batch_concurrency == 3
    for bad in (0, "4", 2.5, True):
        options = {"URL": "https://hq.example.com", "TOKEN": "hq_pat_x", "BATCH_CONCURRENCY": bad}
        assert [m.id for m in RemoteBackend("remote", {"OPTIONS": options}).check()] == ["hq_client.E003"]
    sequential = RemoteBackend("remote", {"OPTIONS": {"URL": "https://x", "TOKEN": "t", "BATCH_CONCURRENCY": 1}})
    assert list(sequential.check()) == [] and sequential.batch_concurrency == 1
